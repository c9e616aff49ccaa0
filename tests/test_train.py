"""Training end to end: config, a short real run, exact resume, signals, the NaN guard,
and eval / predict / export through the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from conftest import SHARED, checkpoint_weights, cli, tiny_train
from resnetlab.cli import main
from resnetlab.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from resnetlab.runtime.config import (
    RECIPES,
    ConfigError,
    TrainConfig,
    config_from_dict,
    resolve_config,
)
from resnetlab.train import fitting

CIFAR_JPEG = SHARED / "data" / "cifar10-jpeg.tar.gz"


def tiny(tmp_path: Path, name: str = "run", **over: Any) -> TrainConfig:
    """ResNet-20 on 20 images per class of the shipped sample: 8 steps per epoch."""
    base: dict[str, Any] = {
        "data.source": "sample",
        "data.limit_per_class": 20,
        "data.batch_size": 25,
        "data.eval_batch_size": 100,
        "run.epochs": 2,
        "run.out_dir": str(tmp_path),
        "run.name": name,
        "run.precision": "fp32",
        "run.log_every": 2,
    }
    base.update(over)
    return resolve_config("paper-cifar", base)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> fitting.RunResult:
    """One uninterrupted ``tiny`` run (``run.out_dir``: its folder's parent), shared: the
    reference of the exact resume, a run to resume with other settings, pretrained weights."""
    return fitting.fit(tiny(tmp_path_factory.mktemp("whole"), "whole"))


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_load(recipe: str) -> None:
    cfg = resolve_config(recipe, {"run.epochs": 1})
    assert cfg.recipe == recipe


def test_paper_cifar_recipe_is_the_paper() -> None:
    cfg = resolve_config("paper-cifar")
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.1, 0.9, 1e-4)
    assert cfg.data.batch_size == 128 and cfg.data.val_fraction == 0.1
    assert cfg.schedule.milestones == (32000, 48000) and cfg.run.iterations == 64000
    assert cfg.schedule.warmup_lr == 0.01 and cfg.schedule.warmup_until_error == 0.8


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"optim.lrr": 1}, "unknown key optim.lrr"),
        ({"run.epochs": -3}, "run.epochs must be a positive"),
        ({"data.val_fraction": 1.5}, "val_fraction"),
        ({"bogus.key": 1}, "unknown section"),
        ({"optim.name": "lbfgs"}, "optim.name"),
    ],
)
def test_bad_config(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config("fast", override)


def test_unknown_recipe() -> None:
    with pytest.raises(ConfigError, match="unknown recipe 'fastest'"):
        resolve_config("fastest")


def test_lr_schedules() -> None:
    from resnetlab.runtime.config import ScheduleConfig
    from resnetlab.train.optim import LRSchedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    multi = LRSchedule(
        opt,
        ScheduleConfig(milestones=(10, 20)),
        base_lr=0.1,
        steps_per_epoch=5,
        total_steps=30,
        model_depth=20,
    )
    assert [round(multi.lr_at(s), 6) for s in (0, 9, 10, 19, 20)] == [0.1, 0.1, 0.01, 0.01, 0.001]
    warm = LRSchedule(
        opt,
        ScheduleConfig(warmup_lr=0.01),
        base_lr=0.1,
        steps_per_epoch=5,
        total_steps=30,
        model_depth=110,
    )
    assert warm.lr_at(0) == 0.01
    warm.observe_train_error(0.85)
    assert warm.lr_at(1) == 0.01
    warm.observe_train_error(0.79)  # below 80%: back to 0.1 (paper §4.2)
    assert warm.lr_at(2) == 0.1
    shallow = LRSchedule(
        opt,
        ScheduleConfig(warmup_lr=0.01),
        base_lr=0.1,
        steps_per_epoch=5,
        total_steps=30,
        model_depth=20,
    )
    assert shallow.lr_at(0) == 0.1
    one = LRSchedule(
        opt,
        ScheduleConfig(name="warmup-linear", warmup_epochs=1),
        base_lr=0.2,
        steps_per_epoch=5,
        total_steps=25,
        model_depth=20,
    )
    assert one.lr_at(0) < one.lr_at(4) == pytest.approx(0.2)
    assert one.lr_at(24) < 0.02


# ---------------------------------------------------------------- a real run
@pytest.mark.slow  # the longest test: conftest starts it first
def test_short_real_run_beats_chance(tmp_path: Path) -> None:
    """Two epochs on a small subset of real CIFAR-10 images: clearly above the 10% of
    guessing (test split: 3,000 images, ``limit_per_class`` of each class, so 25% is far
    outside chance). Validation holds 1,000 images (2%, not the recipe's 5,000) and sees no
    flip TTA: evaluation, not what is tested here, was most of the run's time. Only the
    7,000 images the run uses are decoded (not all 60,000). The network is the recipe's
    ResNet-20 with one block a stage (ResNet-8): what is tested is that a real run learns,
    not the depth (every registered model's forward and backward is test_models'). It
    reached 32.9% test top-1 in 36 s of one core (ResNet-20 on 500 images a class: 33.7%,
    102 s)."""
    over: dict[str, Any] = {
        "run.epochs": 2,
        "run.out_dir": str(tmp_path),
        "run.name": "smoke",
        "run.tta": "none",
        "schedule.warmup_epochs": 0.5,
    }
    if CIFAR_JPEG.is_file():
        over |= {
            "data.source": str(CIFAR_JPEG),
            "data.limit_per_class": 300,
            "data.val_fraction": 0.02,
            "data.batch_size": 32,
            "data.eval_batch_size": 1000,
            "model.options.layers": [1, 1, 1],
        }
        floor = 25.0
    else:  # without ../shared: the 900 training images the package ships, for longer
        over |= {"data.source": "sample", "data.batch_size": 16, "run.epochs": 4}
        floor = 15.0
    result = fitting.fit(resolve_config("fast", over))
    assert result.status == "completed"
    assert result.best_val_top1 > floor
    assert result.test is not None
    assert result.test["top1"] > floor
    run = result.run_dir
    for name in (
        "config.yaml",
        "last.pt",
        "best.pt",
        "metrics.csv",
        "metrics.jsonl",
        "curves.png",
        "confusion.png",
        "results.json",
        "report.md",
    ):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, result.epochs_done + 1))
    assert {"train_loss", "val_top1", "val_top5", "lr", "images_per_s"} <= set(rows[0])
    state = load_checkpoint(run / "last.pt")
    assert state["classes"][0] == "airplane"
    assert len(state["preprocess"]["mean"]) == 3


def test_pretrained_weights_keep_a_fresh_head(
    tmp_path: Path, whole: fitting.RunResult, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    from resnetlab.interop import published

    first = whole
    hashed: list[Path] = []
    real_hash = published.sha256_of

    def counting(path: Path) -> str:
        hashed.append(path)
        return real_hash(path)

    monkeypatch.setattr(published, "sha256_of", counting)
    folder = tmp_path / "two"
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (folder / split / cls).mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (32, 32), (40 * i, 100, 200 if cls == "cat" else 0)).save(
                    folder / split / cls / f"{i}.png"
                )
    messages = log_lines
    cfg = tiny(
        tmp_path,
        "second",
        **{
            "data.source": str(folder),
            "data.limit_per_class": None,
            "data.batch_size": 4,
            "data.val_fraction": 0.34,
            "run.epochs": 1,
            "model.pretrained": str(first.run_dir / "best.pt"),
            "model.freeze_backbone": True,
        },
    )
    result = fitting.fit(cfg)
    assert result.status == "completed"
    assert any("kept fresh (fc.bias, fc.weight)" in m for m in messages)
    assert hashed == [first.run_dir / "best.pt"]  # model.pretrained is resolved once
    before = checkpoint_weights(first.run_dir / "best.pt")
    after = checkpoint_weights(result.run_dir / "last.pt")
    for key in ("layer2.0.conv1.weight", "layer2.0.bn1.running_mean"):  # frozen, stats too
        assert torch.equal(before[key], after[key])
    assert after["fc.weight"].shape == (2, 64)


class _FireAfter(fitting._Signals):
    """Acts as if SIGTERM arrived after ``reads`` checks (a deterministic mid-epoch stop)."""

    reads = 11

    def __init__(self) -> None:
        self.count = 0

    @property  # type: ignore[override]
    def received(self) -> str:
        self.count += 1
        return "sigterm" if self.count > self.reads else ""

    @received.setter
    def received(self, value: str) -> None:
        pass


def test_resume_mid_epoch_gives_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole: fitting.RunResult
) -> None:
    with monkeypatch.context() as m:
        m.setattr(fitting, "_Signals", _FireAfter)
        stopped = fitting.fit(tiny(tmp_path, "stopped"))
    assert stopped.status == "sigterm" and stopped.exit_code == 0
    paused = load_checkpoint(stopped.run_dir / "last.pt")
    assert paused["partial"] is not None and 0 < paused["partial"]["batches_done"] < 8
    resumed = fitting.fit(tiny(tmp_path, "stopped"), resume=stopped.run_dir)
    assert resumed.status == "completed"
    a, b = (
        checkpoint_weights(whole.run_dir / "last.pt"),
        checkpoint_weights(resumed.run_dir / "last.pt"),
    )
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    epochs = [
        json.loads(x)["epoch"] for x in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2]


def test_resume_refuses_a_different_config(whole: fitting.RunResult) -> None:
    before = (whole.run_dir / "last.pt").read_bytes()
    changed = tiny(whole.run_dir.parent, "whole", **{"optim.lr": 0.5})
    with pytest.raises(ConfigError, match="different optim"):
        fitting.fit(changed, resume=whole.run_dir)
    assert (whole.run_dir / "last.pt").read_bytes() == before  # refused before any write


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, log_lines: list[str]
) -> None:
    # Epoch 2's learning rate jumps to 1e11: the loss overflows within a few steps.
    cfg = tiny(
        tmp_path, "nan", **{"schedule.milestones": [8], "schedule.gamma": 1e12, "run.epochs": 3}
    )
    messages = log_lines
    result = fitting.fit(cfg)
    assert result.status == "nan" and result.exit_code == 3
    assert any("NaN/inf" in m and "last good checkpoint" in m for m in messages)
    state = load_checkpoint(result.run_dir / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_checkpoint_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, target)

    def full_disk(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint({"epoch": 2}, target)
    monkeypatch.undo()
    assert load_checkpoint(target)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_corrupt_checkpoint_is_one_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*bad.pt"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a resnetlab training checkpoint"):
        load_checkpoint(other)


# ---------------------------------------------------------------- through the CLI
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    code = main(
        tiny_train(
            "--epochs", "1", "--out", str(out), "--name", "tiny", per_class=20, batch=25, test=True
        )
    )
    assert code == 0
    return out / "tiny" / "best.pt"


def test_eval_cli(capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "eval", str(trained), "--split", "val", "--out", str(tmp_path))
    assert code == 0 and "top-1" in out and "top-5" in out and "airplane" in out  # 10 classes
    data = json.loads((tmp_path / "eval-val.json").read_text())
    assert data["images"] == 100 and len(data["confusion"]) == 10
    assert (tmp_path / "confusion-val.png").read_bytes()[:4] == b"\x89PNG"
    code, out, _ = cli(capsys, "eval", str(trained), "--format", "json")
    assert code == 0 and json.loads(out)["split"] == "test"


def test_predict_cli(capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path) -> None:
    paths = []
    for i, mode in enumerate(("RGB", "L", "RGBA")):
        p = tmp_path / f"img{i}.png"
        Image.new(mode, (50, 40)).save(p)
        paths.append(str(p))
    code, out, _ = cli(capsys, "predict", str(trained), *paths, "--top-k", "3")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3 and all(line.count("%") == 3 for line in lines)
    code, out, _ = cli(capsys, "predict", str(trained), paths[0], "--format", "json")
    probs = [t["probability"] for t in json.loads(out)[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_export_safetensors(
    capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path
) -> None:
    from safetensors import safe_open

    target = tmp_path / "model.safetensors"
    code, _, _ = cli(capsys, "export", str(trained), "-o", str(target))
    assert code == 0
    weights = load_checkpoint(trained)["model"]
    with safe_open(str(target), framework="pt") as f:
        assert json.loads(f.metadata()["classes"])[0] == "airplane"
        for k in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
            assert torch.equal(f.get_tensor(k), weights[k])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--model", "resnt20", "--data", "sample", "--epochs", "1"], "unknown model"),
        (["train", "--data", "sample", "--epochs", "0"], "positive integer"),
        (["train", "--data", "nowhere/at/all", "--epochs", "1"], "no dataset"),
        (["train", "--recipe", "fastest"], "unknown recipe"),
        (["train", "--set", "optim.lrr=1", "--epochs", "1"], "unknown key optim.lrr"),
        (["train", "--set", "nodot=1"], "section.key=value"),
        (["eval", "missing.pt"], "checkpoint not found"),
        (["predict", "missing.pt", "x.jpg"], "checkpoint not found"),
    ],
)
def test_train_cli_errors(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


def test_predict_corrupt_image(
    capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    code, _, err = cli(capsys, "predict", str(trained), str(bad))
    assert code == 2 and "bad.jpg" in err and len(err.strip().splitlines()) == 1


def test_resume_with_other_settings_is_refused(
    capsys: pytest.CaptureFixture[str], trained: Path
) -> None:
    code, _, err = cli(capsys, "train", "--resume", str(trained.parent), "--lr", "0.5")
    assert code == 2 and "cannot change" in err


def test_sigterm_saves_and_exits_zero(tmp_path: Path) -> None:
    """A real SIGTERM (a scheduler's preemption) mid-run: checkpoint saved, exit 0, and the
    run resumes to completion. 10 images a class (9 steps an epoch, 30 before): what is
    tested is that the signal lands mid-run, in a run of 40 epochs, and the resume trains one
    epoch more, so a short epoch tests the same and costs a third."""
    cmd = [
        sys.executable,
        "-m",
        "resnetlab",
        *tiny_train("--epochs", "40", "--out", str(tmp_path), "--name", "sig", per_class=10),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until training is under way
        if line.startswith("epoch 1/"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    rest = proc.stdout.read()
    code = proc.wait(timeout=60)
    assert code == 0, rest
    assert time.monotonic() - sent < 20
    assert "sigterm: saved" in rest
    state = load_checkpoint(tmp_path / "sig" / "last.pt")
    assert state["epoch"] >= 1
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnetlab",
            "train",
            "--resume",
            str(tmp_path / "sig"),
            "--epochs",
            str(state["epoch"] + 1),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert load_checkpoint(tmp_path / "sig" / "last.pt")["epoch"] == state["epoch"] + 1


def test_export_onnx_runs_in_onnxruntime(
    capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from resnetlab.infer.predict import Predictor

    target = tmp_path / "model.onnx"
    code, _, err = cli(capsys, "export", str(trained), "-o", str(target))
    assert code == 0, err
    meta = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    assert json.loads(meta["resnetlab.classes"])[0] == "airplane"
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 32, 32)  # any batch size: the batch dimension is dynamic
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = Predictor.load(trained).model(x)
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-4)
    code, _, err = cli(capsys, "export", str(trained), "-o", str(tmp_path / "model.bin"))
    assert code == 2
    assert "--format" in err


def test_bench_cli(capsys: pytest.CaptureFixture[str], trained: Path) -> None:
    code, out, _ = cli(
        capsys,
        "bench",
        str(trained),
        "--batch-size",
        "4",
        "--engines",
        "eager",
        "eager-bf16",
        "--seconds",
        "0.2",
    )
    assert code == 0
    assert "picked:" in out
    assert "eager" in out
    code, _, err = cli(capsys, "bench", "resnet20", "--engines", "warp")
    assert code == 2
    assert "unknown engine 'warp'" in err


def test_compile_trains_and_checkpoints_the_plain_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run.compile: true`` trains through ``torch.compile`` (really: Inductor), and the
    checkpoint holds the plain model's keys (no ``_orig_mod.`` prefix), so eval, predict
    and resume read it like any other."""
    compiled: list[Any] = []
    real = torch.compile

    def spy(module: Any, **kw: Any) -> Any:
        compiled.append(module)
        return real(module, **kw)

    monkeypatch.setattr(torch, "compile", spy)
    over = {
        "model.options.layers": [1, 1, 1],
        "run.epochs": None,
        "run.iterations": 2,
        "run.compile": True,
    }  # ResNet-8, two steps
    result = fitting.fit(tiny(tmp_path, "compiled", **over))
    assert result.status == "completed" and len(compiled) == 1
    plain = fitting.fit(tiny(tmp_path, "plain", **{**over, "run.compile": False}))
    a, b = (
        checkpoint_weights(result.run_dir / "last.pt"),
        checkpoint_weights(plain.run_dir / "last.pt"),
    )
    assert a.keys() == b.keys()
    # Inductor fuses and reorders float work: two steps agree to ~1e-4, not to the bit (and
    # training amplifies such differences: after 8 steps they reach 1e-2, so the test is short)
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-3) for k in a)


# ---------------------------------------------------------------- modern recipe options
def test_new_keys_default_to_the_old_behaviour() -> None:
    saved = resolve_config("paper-cifar").to_dict()
    for section, key in (
        ("optim", "ema_decay"),
        ("optim", "norm_bias_decay"),
        ("optim", "backbone_lr_scale"),
        ("model", "freeze_until"),
        ("run", "tta"),
        ("data", "mixup_alpha"),
        ("data", "cutmix_alpha"),
        ("data", "mix_switch_prob"),
        ("data", "random_erasing"),
    ):
        del saved[section][key]  # a config saved before these keys existed
    old = config_from_dict(saved)
    assert old == resolve_config("paper-cifar")
    for recipe in RECIPES:
        cfg = resolve_config(recipe, {"run.epochs": 1})
        decay = 0.0 if recipe == "finetune" else None  # finetune spares BN and biases
        # fast takes the two the time-to-accuracy study measured better; the rest none
        ema, tta = (0.998, "flip") if recipe == "fast" else (0.0, "none")
        assert (cfg.optim.ema_decay, cfg.optim.norm_bias_decay, cfg.run.tta) == (ema, decay, tta)
        assert (cfg.data.mixup_alpha, cfg.data.cutmix_alpha, cfg.data.random_erasing) == (0, 0, 0)
        # "auto" (finetune, fast) resolves to one of the two by the data's image size
        assert cfg.data.augment in ("auto", "cifar", "imagenet")
        assert "drop_path" not in cfg.model.options
    with pytest.raises(ConfigError, match="ema_decay"):
        resolve_config("fast", {"optim.ema_decay": 1.0})
    with pytest.raises(ConfigError, match="run.tta must be one of"):
        resolve_config("fast", {"run.tta": "mirror"})
    with pytest.raises(ConfigError, match="data.augment"):
        resolve_config("fast", {"data.augment": "autoaugmnet"})


def _step_records(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> list[dict[str, torch.Tensor]]:
    records: list[dict[str, torch.Tensor]] = []

    def hook(*_args: object) -> None:
        records.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    optimizer.register_step_post_hook(hook)
    return records


def test_ema_equals_a_hand_computed_average() -> None:
    from resnetlab.runtime.config import OptimConfig, ScheduleConfig
    from resnetlab.runtime.execution import Execution
    from resnetlab.train.loop import EpochPlan, EpochState, TrainStep, train_one_epoch
    from resnetlab.train.optim import LRSchedule, build_ema, build_optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 3)
    )
    cpu = torch.device("cpu")
    optimizer = build_optimizer(list(model.parameters()), OptimConfig(lr=0.5), device=cpu)
    schedule = LRSchedule(
        optimizer,
        ScheduleConfig(name="constant"),
        base_lr=0.5,
        steps_per_epoch=4,
        total_steps=4,
        model_depth=0,
    )
    ema = build_ema(model, 0.25)  # the warm-up rate (1+n)/(10+n) is below 0.25 only at n=1
    assert ema is not None
    records = _step_records(model, optimizer)
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(4)]
    loss_fn = torch.nn.CrossEntropyLoss()
    parts = TrainStep(model, optimizer, schedule, loss_fn, Execution(cpu, None, False), ema=ema)
    train_one_epoch(
        parts,
        batches,
        state=EpochState.fresh(cpu),
        step=0,
        plan=EpochPlan(total_batches=4, max_steps=None, log_every=2),
        should_stop=lambda: "",
    )
    assert len(records) == 4
    want = dict(records[0])  # the first update copies the weights
    for n, rec in enumerate(records[1:], start=1):
        d = 2 / 11 if n == 1 else 0.25  # warm-up, then the configured decay
        want = {
            k: d * want[k] + (1 - d) * rec[k] if v.is_floating_point() else rec[k]
            for k, v in want.items()
        }
    got = ema.module.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-6, atol=1e-7)
    assert int(got["1.num_batches_tracked"]) == 4  # integer buffers are copied, not averaged
    assert not torch.equal(got["0.weight"], model.state_dict()["0.weight"])
    assert not torch.equal(got["1.running_mean"], model.state_dict()["1.running_mean"])


def test_ema_run_saves_the_average_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    over = {"model.options.layers": [1, 1, 1], "optim.ema_decay": 0.9}
    whole = fitting.fit(tiny(tmp_path, "whole", **over))
    with monkeypatch.context() as m:
        m.setattr(fitting, "_Signals", _FireAfter)
        stopped = fitting.fit(tiny(tmp_path, "stopped", **over))
    assert stopped.status == "sigterm"
    resumed = fitting.fit(tiny(tmp_path, "stopped", **over), resume=stopped.run_dir)
    assert resumed.status == "completed"
    a = load_checkpoint(whole.run_dir / "last.pt")
    b = load_checkpoint(resumed.run_dir / "last.pt")
    assert a["ema_updates"] == b["ema_updates"] == 16
    for part in ("model", "train_model"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert not torch.equal(a["model"]["fc.weight"], a["train_model"]["fc.weight"])
    # What was validated is the average: the best checkpoint's model gives its val top-1.
    from resnetlab.infer.predict import Predictor

    best = load_checkpoint(whole.run_dir / "best.pt")
    predictor = Predictor.load(whole.run_dir / "best.pt")
    metrics, _ = predictor.evaluate(predictor.split("val"))
    assert metrics["top1"] == pytest.approx(best["best_val_top1"])


def test_norm_bias_decay_spares_bn_and_biases() -> None:
    from resnetlab.models import create_model
    from resnetlab.runtime.config import OptimConfig
    from resnetlab.train.optim import build_optimizer

    cpu = torch.device("cpu")
    for name, momentum in (("sgd", 0.9), ("adamw", 0.0)):
        model = create_model("resnet20")
        params = list(model.parameters())
        cfg = OptimConfig(
            name=name, lr=0.1, momentum=momentum, weight_decay=0.1, norm_bias_decay=0.0
        )
        opt = build_optimizer(params, cfg, device=cpu)
        assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
        before = {k: v.clone() for k, v in model.state_dict().items()}
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        after = model.state_dict()
        for key in ("bn1.weight", "layer1.0.bn2.bias", "fc.bias"):
            assert torch.equal(before[key], after[key]), key
        for key in ("conv1.weight", "fc.weight"):
            torch.testing.assert_close(after[key], before[key] * (1 - 0.1 * 0.1))
    default = build_optimizer(
        list(create_model("resnet20").parameters()), OptimConfig(), device=cpu
    )
    assert len(default.param_groups) == 1  # the paper's decay everywhere; old states load


class _Mirrored(torch.nn.Module):
    """A mirror-symmetric classifier: f(x) = g(x) + g(flip(x))."""

    def __init__(self) -> None:
        super().__init__()
        self.g = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.g(x) + self.g(x.flip(-1))
        return out


def test_tta_of_a_flip_invariant_model_equals_no_tta() -> None:
    from resnetlab.runtime.evaluate import evaluate, shift, tta_logits
    from resnetlab.runtime.execution import Execution

    torch.manual_seed(0)
    model = _Mirrored()
    x = torch.randn(6, 3, 8, 8)
    model(x)
    y = torch.randint(0, 5, (6,))
    place = Execution(torch.device("cpu"), None, False)
    torch.testing.assert_close(tta_logits(model, x, "flip"), tta_logits(model, x, "none"))
    assert evaluate(model, [(x, y)], place=place, tta="flip") == pytest.approx(
        evaluate(model, [(x, y)], place=place)
    )
    assert not torch.allclose(tta_logits(model, x, "flip-shift"), model(x))
    lopsided = model.g  # not symmetric: the mirror view changes its answer
    flip = tta_logits(lopsided, x, "flip")
    torch.testing.assert_close(flip, 0.5 * (lopsided(x) + lopsided(x.flip(-1))))
    assert not torch.allclose(flip, lopsided(x))
    moved = shift(x, 1, 1)
    assert torch.equal(moved[..., 1:, 1:], x[..., :-1, :-1])


def test_modern_options_train_together(tmp_path: Path) -> None:
    over = {
        "model.options.layers": [1, 1, 1],
        "model.options.drop_path": 0.1,
        "data.augment": "trivialaugment",
        "data.random_erasing": 0.25,
        "data.mixup_alpha": 0.2,
        "data.cutmix_alpha": 1.0,
        "optim.label_smoothing": 0.1,
        "optim.ema_decay": 0.9,
        "optim.norm_bias_decay": 0.0,
        "run.tta": "flip-shift",
        "run.epochs": 1,
    }
    result = fitting.fit(tiny(tmp_path, "modern", **over))
    assert result.status == "completed" and result.test is not None
    results = json.loads((result.run_dir / "results.json").read_text())
    assert results["tta"] == "flip-shift" and results["ema_decay"] == 0.9
    assert "test-time augmentation: flip-shift" in (result.run_dir / "report.md").read_text()
    state = load_checkpoint(result.run_dir / "best.pt")
    assert state["preprocess"]["policy"] == "trivialaugment"
    assert state["preprocess"]["augment"] == "cifar"
    with pytest.raises(ConfigError, match="run.tta"):
        fitting.fit(
            tiny(tmp_path, "modern", **{**over, "run.tta": "none"}),
            resume=result.run_dir,
        )


def test_early_stopping_is_a_decision_on_the_watched_value() -> None:
    from resnetlab.train.position import early_stopping

    assert early_stopping(float("-inf"), 0, -2.3, 2) == (-2.3, 0, False)
    assert early_stopping(-2.3, 0, -2.5, 2) == (-2.3, 1, False)
    assert early_stopping(-2.3, 1, -2.3, 2) == (-2.3, 2, True)  # equal is not better
    assert early_stopping(-2.3, 1, -2.0, 2) == (-2.0, 0, False)
    assert early_stopping(-2.3, 9, -3.0, None) == (-2.3, 10, False)  # no patience: never
