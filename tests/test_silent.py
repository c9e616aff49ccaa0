"""Issue 33, section 3: results that were silently wrong. 16-bit images scaled by their
bit depth, duplicate tar members counted once, the decoded cache keyed on content,
untrusted numbers (checkpoint preprocessing, weights, an earlier results.json) refused in
one line, and ``bench`` engines named twice timed once."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import cli, copy_run
from resnetlab.data.decoded_cache import load_folder
from resnetlab.data.folders import index_folder, load_split, stratified_split
from resnetlab.data.images import decode_image


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- 16-bit images
def test_sixteen_bit_grey_decodes_like_the_same_picture_in_eight_bits() -> None:
    """The same picture as 8-bit and as 16-bit PNG decoded differently (min–max stretched
    per image: ship 17.5% vs 81.7%); now both give the same pixels."""
    eight = (np.arange(64).reshape(8, 8) * 3 + 20).astype(np.uint8)
    sixteen = eight.astype(np.uint16) * 257  # the same levels at full 16-bit scale
    a, b = decode_image(_png(eight), "a.png"), decode_image(_png(sixteen), "b.png")
    assert Image.open(io.BytesIO(_png(sixteen))).mode.startswith("I")
    assert torch.equal(a, b)


def test_a_uniform_sixteen_bit_image_keeps_its_level() -> None:
    """A uniform 16-bit image became black (its range was zero)."""
    grey = decode_image(_png(np.full((8, 8), 30000, np.uint16)), "u.png")
    assert grey.unique().tolist() == [round(30000 / 257)]


# ---------------------------------------------------------------- tar -r duplicates
def _tar_with_an_updated_member(tmp_path: Path) -> Path:
    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as tar:
        for cls, level in (("cat", 40), ("dog", 200)):
            for i in range(10):
                data = _png(np.full((8, 8, 3), level + i, np.uint8))
                info = tarfile.TarInfo(f"{cls}/{i}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with tarfile.open(archive, "a") as tar:  # what `tar -r` does after editing cat/0.png
        data = _png(np.full((8, 8, 3), 7, np.uint8))
        info = tarfile.TarInfo("cat/0.png")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return archive


def test_a_member_stored_twice_is_one_image_the_last_copy(tmp_path: Path) -> None:
    archive = _tar_with_an_updated_member(tmp_path)
    index = index_folder(archive)
    assert len(index.splits["all"]) == 20  # was 21: the old copy counted too
    data = load_split(index, "all")
    assert len(data) == 20
    levels = sorted(int(x[0, 0, 0]) for x in data.images[data.labels == 0])
    assert levels[0] == 7 and 40 not in levels  # the last copy, as `tar -x` leaves it
    train, val = stratified_split(data, 0.3, seed=0)
    pixels = {bytes(x.numpy().tobytes()) for x in train.images}
    assert not any(bytes(x.numpy().tobytes()) in pixels for x in val.images)  # no leakage


# ---------------------------------------------------------------- decoded cache
def test_the_decoded_cache_sees_pixels_changed_with_size_and_mtime_kept(tmp_path: Path) -> None:
    """``cp -p`` / ``rsync -a`` keep size and mtime: the stale cache trained on without a
    "decoding" line. The key is now the content's SHA-256."""
    folder = tmp_path / "data"
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (10 * i, 50, 90)).save(folder / cls / f"{i}.bmp")
    said: list[str] = []
    kw = {"index": None, "load_size": None, "on_error": "skip", "cache": True}
    first, _ = load_folder(folder, progress=said.append, **kw)
    target = folder / "cat" / "1.bmp"
    st = target.stat()
    Image.new("RGB", (8, 8), (250, 250, 250)).save(target)  # same size: an uncompressed BMP
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    said.clear()
    again, _ = load_folder(folder, progress=said.append, **kw)
    assert any(line.startswith("decoding") for line in said), said
    assert int(again["all"].images.max()) == 250 and int(first["all"].images.max()) < 250
    said.clear()
    load_folder(folder, progress=said.append, **kw)  # unchanged content: a cache hit
    assert said == []


# ---------------------------------------------------------------- untrusted numbers
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """A real one-epoch ResNet-20 checkpoint (a copy of the session's tiny run)."""
    return copy_run(tiny_run, tmp_path_factory.mktemp("silent")) / "last.pt"


def _crafted(ckpt: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    from resnetlab.runtime.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt)
    change(state)
    out = tmp_path / "crafted.pt"
    torch.save(state, out)
    return out


def _nan_weight(s: dict[str, Any]) -> None:
    s["model"]["fc.weight"][0, 0] = float("nan")


def _set_pre(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["preprocess"].__setitem__(key, value)


CRAFTED = {
    "nan-weight": (_nan_weight, "weight fc.weight holds NaN"),
    "zero-std": (_set_pre("std", [0.2, 0.0, 0.2]), "has a zero or negative value"),
    "nan-std": (_set_pre("std", [0.2, float("nan"), 0.2]), "is not finite numbers"),
    "nan-mean": (_set_pre("mean", [float("nan")] * 3), "is not finite numbers"),
    "two-means": (_set_pre("mean", [0.5, 0.5]), "has 2 values for 3 channels"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_nan_weights_or_a_zero_std_are_refused(
    case: str, command: str, ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They gave "ship nan%", a top-1 of 10% and exit 0; ``predict --format json`` wrote a
    bare NaN."""
    change, needle = CRAFTED[case]
    bad = _crafted(ckpt, tmp_path, change)
    image = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), (200, 30, 40)).save(image)
    rest = ["--split", "val"] if command == "eval" else [str(image), "--format", "json"]
    code, out, err = cli(capsys, command, str(bad), *rest)
    assert code == 2 and err.count("\n") == 1, err
    assert f"cannot use checkpoint {bad}: " in err and needle in err, err
    assert "NaN" not in out


def test_bench_times_an_engine_named_twice_once(capsys: pytest.CaptureFixture[str]) -> None:
    """``--engines eager eager`` marked two rows "← picked"."""
    code, out, err = cli(
        capsys, "bench", "resnet20", "--engines", "eager", "eager", "--batch-size", "2",
        "--seconds", "0.05",
    )  # fmt: skip
    assert code == 0, err
    assert out.count("← picked") == 1, out
    assert sum(line.lstrip().startswith("eager ") for line in out.splitlines()) == 1, out


# ---------------------------------------------------------------- reproduce --previous
def _earlier(tmp_path: Path, **run: Any) -> Path:
    entry = {"model": "resnet20", "seed": 0, "test_top1": 91.5, "best_val_top1": 90.0} | run
    data = {"provenance": {"command": "resnetlab reproduce cifar-table", "runs": [entry]}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "run",
    [
        {"test_top1": 250},
        {"test_top1": float("nan")},
        {"best_val_top1": -3},
        {"test_top1": "91.5"},
        {"seed": "0"},
        {"wall_s": "abc"},
        {"wall_s": float("inf")},
        {"epochs": "5"},
        {"options": ["a"]},
        {"hardware": 3},
    ],
    ids=lambda r: "-".join(f"{k}={v}" for k, v in r.items()),
)
def test_an_earlier_report_with_impossible_numbers_is_refused(
    run: dict[str, Any], tmp_path: Path
) -> None:
    """``test_top1: 250`` made a report with -150.00% error, NaN "nan" (exit 0); wrong types
    were internal errors."""
    from resnetlab.experiments.earlier import EarlierReportError, earlier_runs

    assert earlier_runs(_earlier(tmp_path))[0].results["test"]["top1"] == 91.5  # the good one
    with pytest.raises(EarlierReportError, match="a run without valid test and validation"):
        earlier_runs(_earlier(tmp_path, **run))
