"""docs/bad-input.md's rows for issue 31's training messages, in tests/test_bad_input.py's
style: one line on stderr, exit 2, no traceback, no file changed (and, for a checkpoint of
another architecture, nothing decoded first)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from conftest import cli, tiny_train
from resnetlab.models import create_model

Capture = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad31train")
    torch.save(create_model("resnet18").state_dict(), root / "r18.pth")
    (root / "out").mkdir()
    return {"root": root, "out": root / "out"}


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


CASES = {
    "train --pretrained holding another architecture": (
        tiny_train("--epochs", "1", "--pretrained", "{root}/r18.pth", "--out", "{out}"),
        "holds a resnet18 (1000 classes), not a resnet20: only ",
    ),
    "in_channels the data contradicts": (
        tiny_train("--epochs", "1", "--set", "model.options.in_channels=1", "--out", "{out}"),
        "model.options.in_channels=1, but the data has 3 channels (images are decoded as RGB); "
        "leave in_channels out (it is taken from the data)",
    ),
    "num_classes the data contradicts": (
        tiny_train("--epochs", "1", "--set", "model.options.num_classes=7", "--out", "{out}"),
        "model.options.num_classes=7, but the data has 10 classes; leave num_classes out",
    ),
}


@pytest.mark.parametrize("what", list(CASES))
def test_bad_input(what: str, files: dict[str, Path], capsys: Capture) -> None:
    argv, needle = CASES[what]
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    before = _digests(files["root"])
    code, out, err = cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"resnetlab {args[0]}: error: "), err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert _digests(files["root"]) == before
