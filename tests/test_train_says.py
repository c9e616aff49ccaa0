"""Training says it before it surprises, and its errors name the fix (issue 31): a
checkpoint of another architecture is refused before any data is decoded, naming both
architectures and the ``--model`` to use; a fine-tune without pretrained weights says what
it does instead; options the data overrides are refused or recorded; a finished run is not
re-evaluated on ``--resume``; top-5 only where there are more than 5 classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import checkpoint_weights, cli, tiny_train
from resnetlab.models.registry import create_model
from resnetlab.runtime.checkpoint import Checkpoint


def test_a_checkpoint_of_another_architecture_names_both_and_the_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resnetlab.train import parts

    file = tmp_path / "r18.pth"
    torch.save(create_model("resnet18", num_classes=10).state_dict(), file)

    def no_data(*_a: object, **_k: object) -> None:
        raise AssertionError("data decoded before the weights were checked")

    monkeypatch.setattr(parts, "load_run_data", no_data)
    argv = tiny_train("--out", str(tmp_path), "--pretrained", str(file))  # a resnet20 run
    code, _, err = cli(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "resnet18" in err and "resnet20" in err and "--model resnet18" in err


def test_the_finetune_recipe_without_weights_says_what_it_does(log_lines: list[str]) -> None:
    from resnetlab.runtime.config import resolve_config
    from resnetlab.train.build import say_unpretrained

    said = log_lines
    say_unpretrained(resolve_config("finetune", {}))
    assert len(said) == 1
    assert "expects pretrained weights" in said[0] and "randomly initialised resnet50" in said[0]
    assert "--pretrained" in said[0] and "adam lr 0.0001" in said[0]
    with_weights = resolve_config("finetune", {"model.pretrained": "resnet50.tv_in1k"})
    say_unpretrained(with_weights)
    say_unpretrained(resolve_config("fast", {}))
    assert len(said) == 1


def test_in_channels_the_data_contradicts_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = tiny_train("--out", str(tmp_path), "--set", "model.options.in_channels=1")
    code, out, err = cli(capsys, *argv)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "model.options.in_channels=1, but the data has 3 channels" in err
    assert not list(tmp_path.glob("*/config.yaml")) or all(
        "in_channels: 1" not in f.read_text() for f in tmp_path.glob("*/config.yaml")
    )
    argv = tiny_train("--out", str(tmp_path), "--set", "model.options.num_classes=7")
    code, out, err = cli(capsys, *argv)
    assert code == 2 and "model.options.num_classes=7, but the data has 10 classes" in err


def test_a_head_trained_for_other_classes_is_reset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, log_lines: list[str]
) -> None:
    from resnetlab.runtime.config import resolve_config
    from resnetlab.train.build import build_model

    code, _, err = cli(capsys, *tiny_train("--epochs", "1", "--out", str(tmp_path), "--name", "a"))
    assert code == 0, err
    best = tmp_path / "a" / "best.pt"
    cfg = resolve_config("paper-cifar", {"model.pretrained": str(best)})
    sample = Checkpoint.load(best).classes
    weights = checkpoint_weights(best)
    said = log_lines
    other = tuple(f"kind{i}" for i in range(10))
    net = build_model(cfg, 10, 3, classes=other)
    assert any("its head was trained for other classes" in m and "reset" in m for m in said)
    assert "fc.weight" in said[-1]  # kept fresh
    assert not torch.equal(net.state_dict()["fc.weight"], weights["fc.weight"])
    said.clear()
    same = build_model(cfg, 10, 3, classes=sample)
    assert not any("other classes" in m for m in said)
    assert torch.equal(same.state_dict()["fc.weight"], weights["fc.weight"])


def test_top5_only_where_there_are_more_than_5_classes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from test_data import make_folder

    layout = {f"{s}/{c}": n for s, n in (("train", 6), ("val", 2), ("test", 2)) for c in "abc"}
    root = make_folder(tmp_path / "d", layout)
    argv = ["train", "--recipe", "paper-cifar", "--data", str(root), "--epochs", "1"]
    argv += ["--batch-size", "4", "--precision", "fp32", "--out", str(tmp_path), "--name", "t"]
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    text = (out + err).replace(str(tmp_path), "")
    assert "top1" in text and "top-1" in text
    assert "top5" not in text and "top-5" not in text
    assert "top-5" not in (tmp_path / "t" / "report.md").read_text()
    code, out, err = cli(capsys, "eval", str(tmp_path / "t" / "best.pt"), "--split", "val")
    assert code == 0, err
    assert "top-1" in out and "top-5" not in out


def test_resuming_a_finished_run_says_so_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = tiny_train("--epochs", "1", "--out", str(tmp_path), "--name", "f", test=True)
    code, _, err = cli(capsys, *argv)
    assert code == 0, err
    run = tmp_path / "f"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, out, err = cli(capsys, "train", "--resume", str(run))
    assert code == 0, err
    assert "is finished (completed after 1 epochs, test evaluated): nothing to do" in out + err
    assert "test (best checkpoint" not in out + err  # the test split is not evaluated again
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before
