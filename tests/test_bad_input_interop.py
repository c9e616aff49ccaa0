"""docs/bad-input.md's rows for issue 31's messages, in tests/test_bad_input.py's style:
one line on stderr, exit 2, no traceback, no file changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import cli, tiny_train
from resnetlab.interop.fact_sheet import CIFAR10_CLASSES
from resnetlab.models import create_model

Capture = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from resnetlab.cli import main

    root = tmp_path_factory.mktemp("bad31")
    assert main(list(tiny_train("--iterations", "1", "--out", str(root), "--name", "run"))) == 0
    torch.save(create_model("resnet18").state_dict(), root / "r18.pth")
    Image.new("RGB", (40, 30), (90, 120, 200)).save(root / "photo.png")
    for split in ("train", "val"):  # the PyTorch transfer-learning tutorial's layout
        for c, cls in enumerate(CIFAR10_CLASSES):
            (root / "tv" / split / cls).mkdir(parents=True)
            Image.new("RGB", (32, 32), (20 * c, 90, 30)).save(root / "tv" / split / cls / "a.png")
    return {"root": root, "ckpt": root / "run" / "last.pt"}


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


CASES = {
    "a checkpoint of another architecture": (
        ("predict", "{root}/r18.pth", "{root}/photo.png", "--model", "resnet50"),
        "holds a resnet18 (1000 classes), not a resnet50_v1_5: only 98 of 320 tensors match; "
        "use --model resnet18",
    ),
    "--split test on a train/val folder": (
        ("eval", "{ckpt}", "--data", "{root}/tv", "--split", "test"),
        "has no 'test' split; it has val, train (--split val)",
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
