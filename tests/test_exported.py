"""resnetlab's own exports as models: a ``.safetensors`` or ``.onnx`` file that
``resnetlab export`` wrote is taken by ``eval`` and ``predict`` like the checkpoint it came
from, and gives the same predictions (issue: predict refused its own exports)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import cli
from resnetlab.cli import main
from resnetlab.infer.predict import Predictor


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported")
    args = ["train", "--recipe", "paper-cifar", "--data", "sample", "--epochs", "1"]
    args += ["--limit-per-class", "10", "--batch-size", "25", "--precision", "fp32"]
    assert main([*args, "--out", str(out), "--name", "tiny"]) == 0
    return out / "tiny" / "best.pt"


def _images(folder: Path) -> list[str]:
    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(3):
        pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=g)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels.numpy()).save(path)
        paths.append(str(path))
    return paths


def _top(capsys: pytest.CaptureFixture[str], model: str, paths: list[str]) -> list[float]:
    """The top-5 probabilities of every image, in one list (classes checked in order)."""
    code, out, err = cli(capsys, "predict", model, *paths, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [t["class"] for t in rows[0]["top"]][:1]  # classes are named
    return [t["probability"] for row in rows for t in row["top"]]


def test_exported_safetensors_predicts_as_the_checkpoint(
    capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path
) -> None:
    target = tmp_path / "model.safetensors"
    assert cli(capsys, "export", str(trained), "-o", str(target))[0] == 0
    paths = _images(tmp_path)
    want, got = _top(capsys, str(trained), paths), _top(capsys, str(target), paths)
    assert got == pytest.approx(want, abs=1e-6)  # the same weights, the same preprocessing
    p = Predictor.load(target, device="cpu")
    assert p.classes[0] == "airplane" and p.data_size == (3, 32, 32)
    assert p.config.model.name == "resnet20"
    code, out, _ = cli(capsys, "eval", str(target), "--split", "val", "--out", str(tmp_path))
    assert code == 0 and "top-1" in out
    code, out, _ = cli(capsys, "eval", str(trained), "--split", "val", "--out", str(tmp_path))
    assert code == 0
    # and from the export, a second export: safetensors → ONNX
    assert cli(capsys, "export", str(target), "-o", str(tmp_path / "again.onnx"))[0] == 0


def test_exported_onnx_predicts_as_the_checkpoint(
    capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    target = tmp_path / "model.onnx"
    assert cli(capsys, "export", str(trained), "-o", str(target))[0] == 0
    paths = _images(tmp_path)
    want, got = _top(capsys, str(trained), paths), _top(capsys, str(target), paths)
    assert got == pytest.approx(want, abs=1e-4)  # BN folded: float rounding only
    code, out, _ = cli(capsys, "eval", str(target), "--split", "val", "--out", str(tmp_path))
    assert code == 0 and "top-1" in out
    code, _, err = cli(capsys, "predict", str(target), paths[0], "--explain", str(tmp_path / "x"))
    assert code == 2 and "ONNX file does not have" in err and len(err.strip().splitlines()) == 1


def test_broken_exports_get_one_line(
    capsys: pytest.CaptureFixture[str], trained: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    good = tmp_path / "good.safetensors"
    assert cli(capsys, "export", str(trained), "-o", str(good))[0] == 0
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        meta = dict(f.metadata())
    weights = load_file(str(good))
    cases = {
        "no classes": ({k: v for k, v in meta.items() if k != "classes"}, weights, "incomplete"),
        "wrong model": ({**meta, "model": "resnet56"}, weights, "do not fit resnet56"),
        "unknown model": ({**meta, "model": "resnet7"}, weights, "cannot build"),
    }
    for name, (m, w, why) in cases.items():
        bad = tmp_path / f"{name.replace(' ', '-')}.safetensors"
        save_file(w, str(bad), metadata=m)
        code, _, err = cli(capsys, "predict", str(bad), _images(tmp_path)[0])
        assert code == 2 and why in err and len(err.strip().splitlines()) == 1, (name, err)
    onnx = tmp_path / "garbage.onnx"
    onnx.write_bytes(b"not a model")
    code, _, err = cli(capsys, "eval", str(onnx), "--split", "val")
    assert code == 2 and "garbage.onnx" in err and len(err.strip().splitlines()) == 1
