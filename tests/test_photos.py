"""Photo folders just work: mixed sizes and modes, the ImageNet pipeline chosen automatically,
the stored size following ``--image-size``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import cli
from resnetlab.data.folders import index_folder, load_split
from resnetlab.data.pipeline import choose_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")

# (size, mode, suffix): the mix a phone, a scanner and the web give you.
PHOTOS = [
    ((333, 500), "RGB", ".jpg"),
    ((512, 768), "L", ".png"),
    ((400, 300), "RGBA", ".png"),
    ((260, 390), "P", ".png"),
    ((300, 300), "CMYK", ".jpg"),
    ((480, 320), "I;16", ".png"),
]


def _photo(path: Path, size: tuple[int, int], mode: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16)).save(path)
        return
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (rgb.convert(mode) if mode != "P" else rgb.quantize(16)).save(path)


def _photo_folder(root: Path) -> Path:
    for split, n in (("train", 2), ("val", 1)):
        for c, cls in enumerate(("cats", "dogs")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i, (size, mode, suffix) in enumerate(PHOTOS * n):
                _photo(folder / f"{i}{suffix}", size, mode, seed=100 * c + i)
    return root


def test_pipeline_follows_the_image_size(tmp_path: Path) -> None:
    photos = _photo_folder(tmp_path / "photos")
    p = choose_pipeline(str(photos), image_size=None, load_size=None)
    assert (p.augment, p.image_size, p.load_size) == ("imagenet", 224, 256)
    p = choose_pipeline(str(photos), image_size=160, load_size=None)
    assert (p.image_size, p.load_size) == (160, 183)  # 160 / 0.875
    small = choose_pipeline("sample", image_size=None, load_size=None)
    assert (small.augment, small.load_size) == ("cifar", None)


def test_stored_photos_keep_their_proportions(tmp_path: Path) -> None:
    """Resizing by the shorter side and cutting the centre square: a 200×100 photo whose
    outer quarters are red and middle half blue is all blue once stored (squashing it into
    a square would keep red at the edges)."""
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        arr = np.zeros((100, 200, 3), dtype=np.uint8)
        arr[:, :50, 0] = arr[:, 150:, 0] = 255
        arr[:, 50:150, 2] = 255
        Image.fromarray(arr).save(tmp_path / cls / "wide.png")
    data = load_split(index_folder(tmp_path), "all", size=(40, 40), crop=True)
    assert data.images.shape == (2, 3, 40, 40)
    corners = data.images[0, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners[0].max() < 64 and corners[2].min() > 190  # blue (edge blur), no red


def test_finetune_trains_on_a_folder_of_mixed_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's failing command (`train --model resnet18 --data FOLDER --recipe
    finetune`) used to stop with "images differ in size"; it now trains, with the ImageNet
    pipeline chosen, printed and saved."""
    photos = _photo_folder(tmp_path / "photos")
    out = tmp_path / "runs"
    code, stdout, err = cli(
        capsys,
        "train",
        "--model",
        "resnet18",
        "--data",
        str(photos),
        "--recipe",
        "finetune",
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--precision",
        "fp32",
        "--no-test",
        "--out",
        str(out),
        "--name",
        "ft",
    )
    assert code == 0, err
    assert "images differ in size" not in err
    assert "ImageNet pipeline: stored at shorter side 73" in stdout
    assert "random-resized crop 64 + flip; eval centre crop 64" in stdout
    saved = yaml.safe_load((out / "ft" / "config.yaml").read_text())["data"]
    assert (saved["augment"], saved["image_size"], saved["load_size"]) == ("imagenet", 64, 73)
    code, stdout, err = cli(capsys, "eval", str(out / "ft" / "best.pt"), "--split", "val")
    assert code == 0, err
    assert "on val (12 images)" in stdout
