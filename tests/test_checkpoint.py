"""The typed checkpoint (resnetlab.runtime.checkpoint.Checkpoint) and the run-folder reader:
the file format is the dict runs have always written, old files load, the model rebuilds."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from conftest import cli
from resnetlab.data.augment import Preprocess
from resnetlab.models import create_model
from resnetlab.runtime.checkpoint import (
    Checkpoint,
    CheckpointError,
    NotTrainingCheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from resnetlab.runtime.config import resolve_config, save_config
from resnetlab.runtime.folder_layout import RunFolder, checkpoint_file

CLASSES = ("cat", "dog", "frog")


def _checkpoint() -> Checkpoint:
    cfg = resolve_config("paper-cifar", {"model.name": "resnet20", "data.source": "sample"})
    net = create_model("resnet20", num_classes=len(CLASSES), in_channels=3)
    pre = Preprocess(
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.2, 0.25),
        image_size=32,
        policy="trivialaugment",
        mixup_alpha=0.2,
    )
    return Checkpoint(
        model=net.state_dict(),
        config=cfg,
        classes=CLASSES,
        preprocess=pre,
        data_size=(3, 32, 32),
        model_name="resnet20",
        epoch=3,
        step=24,
        rng={"torch": torch.get_rng_state()},
    )


def test_saved_checkpoint_is_the_dict_runs_always_wrote(tmp_path: Path) -> None:
    ckpt = _checkpoint()
    ckpt.save(tmp_path / "best.pt")
    raw = load_checkpoint(tmp_path / "best.pt")
    assert list(raw) == [
        "format",
        "model",
        "optimizer",
        "schedule",
        "scaler",
        "rng",
        "epoch",
        "step",
        "best",
        "bad_epochs",
        "best_val_top1",
        "partial",
        "config",
        "classes",
        "preprocess",
        "data_size",
        "model_name",
        "elapsed_s",
        "world_size",
        "ranks",
    ]
    assert raw["classes"] == list(CLASSES) and raw["data_size"] == [3, 32, 32]
    assert raw["preprocess"]["policy"] == "trivialaugment"
    assert raw["config"] == ckpt.config.to_dict()
    back = Checkpoint.load(tmp_path / "best.pt")
    assert back.to_state().keys() == ckpt.to_state().keys()
    assert back.config == ckpt.config and back.preprocess == ckpt.preprocess
    assert (back.epoch, back.step, back.classes, back.data_size) == (3, 24, CLASSES, (3, 32, 32))


def test_model_rebuilds_the_network_and_preprocess_is_the_evaluation_part(tmp_path: Path) -> None:
    ckpt = _checkpoint()
    ckpt.save(tmp_path / "best.pt")
    net = Checkpoint.load(tmp_path / "best.pt").load_model()
    assert not net.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, ckpt.model[key]), key
    pre = ckpt.eval_preprocess
    assert (pre.mean, pre.std, pre.image_size) == ((0.5, 0.4, 0.3), (0.2, 0.2, 0.25), 32)
    assert pre.policy == "none" and pre.mixup_alpha == 0.0  # training-only augmentations


def test_an_older_checkpoint_loads_with_defaults(tmp_path: Path) -> None:
    """Files from before elapsed_s, world_size, ranks and crop_pct were saved."""
    state: dict[str, Any] = _checkpoint().to_state()
    for key in ("elapsed_s", "world_size", "ranks", "scaler"):
        del state[key]
    del state["preprocess"]["crop_pct"]
    save_checkpoint(state, tmp_path / "old.pt")
    old = Checkpoint.load(tmp_path / "old.pt")
    assert (old.elapsed_s, old.world_size, old.ranks, old.scaler) == (0.0, 1, None, None)
    assert old.preprocess.crop_pct == 0.875


def test_refusals_keep_their_errors(tmp_path: Path) -> None:
    save_checkpoint({"epoch": 1}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="incomplete training checkpoint"):
        Checkpoint.load(tmp_path / "bare.pt")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "published.pt")
    with pytest.raises(NotTrainingCheckpointError, match="not a resnetlab training checkpoint"):
        Checkpoint.load(tmp_path / "published.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch file"):
        Checkpoint.load(tmp_path / "text.pt")


def test_run_folder_reads_config_and_checkpoints(tmp_path: Path) -> None:
    ckpt = _checkpoint()
    save_config(ckpt.config, tmp_path / "config.yaml")
    ckpt.save(tmp_path / "last.pt")
    folder = RunFolder(tmp_path)
    assert folder.config() == ckpt.config
    assert folder.settings()["model"]["name"] == "resnet20"
    assert folder.checkpoint("last.pt").step == 24
    assert checkpoint_file(tmp_path) == tmp_path / "last.pt"
    assert checkpoint_file(tmp_path / "best.pt") == tmp_path / "best.pt"


# ---------------------------------------------------------------- files of earlier code
LEGACY = Path(__file__).parent / "legacy"


@pytest.fixture(scope="module")
def legacy_expected() -> dict[str, Any]:
    expected: dict[str, Any] = json.loads((LEGACY / "expected.json").read_text())
    return expected


def test_a_run_folder_of_earlier_code_evaluates_and_predicts(
    capsys: pytest.CaptureFixture[str], legacy_expected: dict[str, Any], tmp_path: Path
) -> None:
    best = LEGACY / "run" / "best.pt"
    code, out, err = cli(capsys, "eval", str(best), "--split", "val")
    assert code == 0, err
    assert out.splitlines()[0] == f"{best} on val (100 images): {legacy_expected['eval_val']}"
    generator = torch.Generator().manual_seed(0)
    images = []
    for i in range(2):
        pixels = (torch.rand(32, 32, 3, generator=generator) * 255).to(torch.uint8).numpy()
        images.append(tmp_path / f"legacy_img{i}.png")
        Image.fromarray(pixels).save(images[-1])
    code, out, err = cli(capsys, "predict", str(best), *map(str, images), "--top-k", "3")
    assert code == 0, err
    assert out.splitlines() == [f"{tmp_path}/{line}" for line in legacy_expected["predict"]]


def test_a_run_folder_of_earlier_code_resumes_exactly(
    capsys: pytest.CaptureFixture[str], legacy_expected: dict[str, Any], tmp_path: Path
) -> None:
    """A paused epoch saved by earlier code (the schedule under its old name ``onecycle``)
    continues to the same epochs, figures and test as that code continued it. Losses are
    compared to 1e-4: the same arithmetic on another CPU rounds differently. The run is
    recorded with two threads and run so here: with one (the suite's workers), sums round
    differently, and at lr 0.2 on 60 images a 1e-5 difference in epoch 2 is a different
    epoch 3."""
    run = tmp_path / "run"
    shutil.copytree(LEGACY / "run", run)  # the stored folder stays as it was written
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code, out, err = cli(capsys, "train", "--resume", str(run))
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    drop = ("images_per_s", "train_time_s", "epoch_time_s")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in row.items() if k not in drop} for row in rows]
    assert rows == [pytest.approx(row, rel=1e-4) for row in legacy_expected["resumed_metrics"]]
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "completed"
    assert results["test"] == pytest.approx(legacy_expected["resumed_test"], rel=1e-4)
    # "decoding N images" lines say whether the decoded cache was warm, not what resumed.
    said = [line.replace(str(run), "RUN") for line in out.splitlines()]
    said = [line for line in said if not line.startswith("decoding ")]
    timing = re.compile(r"\d+ img/s  [\d.]+ s$")  # the epoch lines' speed and seconds vary
    assert [timing.sub("", line) for line in said] == [
        timing.sub("", line)
        for line in legacy_expected["resumed_output"]
        if not line.startswith("decoding ")
    ]
