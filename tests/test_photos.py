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
from resnetlab.data.images import decode_square
from resnetlab.data.pipeline import choose_pipeline
from resnetlab.infer.predict import Predictor
from resnetlab.runtime.checkpoint import load_checkpoint

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


def _wide_red_blue(path: Path) -> Path:
    """A 200×100 photo: outer quarters red, middle half blue."""
    arr = np.zeros((100, 200, 3), dtype=np.uint8)
    arr[:, :50, 0] = arr[:, 150:, 0] = 255
    arr[:, 50:150, 2] = 255
    Image.fromarray(arr).save(path)
    return path


def _train_photos(
    capsys: pytest.CaptureFixture[str], photos: Path, out: Path, name: str, *args: str
) -> tuple[int, str, str]:
    """``resnetlab train`` of ResNet-18 on ``photos`` at 64 px, batch 4, fp32, no test."""
    return cli(
        capsys,
        "train",
        *("--model", "resnet18", "--data", str(photos), "--image-size", "64"),
        *("--batch-size", "4", "--precision", "fp32", "--no-test"),
        *("--out", str(out), "--name", name),
        *args,
    )


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
        _wide_red_blue(tmp_path / cls / "wide.png")
    data = load_split(index_folder(tmp_path), "all", size=(40, 40), crop=True)
    assert data.images.shape == (2, 3, 40, 40)
    corners = data.images[0, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners[0].max() < 64 and corners[2].min() > 190  # blue (edge blur), no red


def test_square_storage_follows_torchvision_arithmetic(tmp_path: Path) -> None:
    """A 500×333 photo stored at 256: the shorter side to 256, the longer truncated as
    torchvision's Resize(256) does (int(256·500/333) = 384), the centre 256 cut at
    round(128/2) = 64; with the named filter, bilinear and bicubic differing."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (333, 500, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    for name, filt in (
        ("bilinear", Image.Resampling.BILINEAR),
        ("bicubic", Image.Resampling.BICUBIC),
    ):
        ref = np.asarray(Image.fromarray(arr).resize((384, 256), filt))[:, 64 : 64 + 256]
        got = decode_square(data, "p.png", 256, interpolation=name)
        assert got.shape == (3, 256, 256)
        assert np.array_equal(got.permute(1, 2, 0).numpy(), ref), name
    bilinear = decode_square(data, "p.png", 256)
    assert not np.array_equal(bilinear, decode_square(data, "p.png", 256, interpolation="bicubic"))


def test_stored_photos_use_the_configured_interpolation(tmp_path: Path) -> None:
    """``data.interpolation`` reaches the stored images: a folder loaded with bicubic holds
    exactly Pillow's bicubic resize of each photo, not the bilinear default."""
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        _photo(tmp_path / cls / "x.png", (90, 60), "RGB", seed=ord(cls))
    index = index_folder(tmp_path)
    bicubic = load_split(index, "all", size=(40, 40), crop=True, interpolation="bicubic")
    bilinear = load_split(index, "all", size=(40, 40), crop=True)
    source = Image.open(tmp_path / "a" / "x.png")  # 90×60 → 60×40, centre 40 from x = 10
    ref = np.asarray(source.resize((60, 40), Image.Resampling.BICUBIC))[:, 10:50]
    assert np.array_equal(bicubic.images[0].permute(1, 2, 0).numpy(), ref)
    assert not np.array_equal(bicubic.images.numpy(), bilinear.images.numpy())


def test_finetune_trains_on_a_folder_of_mixed_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's failing command (`train --model resnet18 --data FOLDER --recipe
    finetune`) used to stop with "images differ in size"; it now trains, with the ImageNet
    pipeline chosen, printed and saved."""
    photos = _photo_folder(tmp_path / "photos")
    out = tmp_path / "runs"
    code, stdout, err = _train_photos(
        capsys, photos, out, "ft", "--recipe", "finetune", "--epochs", "1"
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
    # predict reads a photo as training stored it: the shorter side to 73 and the centre
    # square (blue, the border column of the resize's blend aside), where squashing the wide
    # photo into a square kept its outer quarters red, 18 columns on each side.
    predictor = Predictor.load(out / "ft" / "best.pt", device="cpu")
    seen = predictor.read_images([str(_wide_red_blue(tmp_path / "wide.png"))])
    assert seen.shape == (1, 3, 73, 73)
    assert seen[0, 0, :, 1:-1].max() < 64 and seen[0, 2, :, 1:-1].min() > 190


def test_fast_recipe_trains_photos_with_every_modern_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The modern options on the ImageNet pipeline: TrivialAugment and random erasing on the
    random-resized crops, mixup/CutMix, stochastic depth, the EMA and TTA; the stored size is
    chosen with a policy as with ``auto``, the policy is saved with the pipeline, and
    evaluating the result gives what validation measured (the average, with the run's TTA)."""
    photos = _photo_folder(tmp_path / "photos")
    out = tmp_path / "runs"
    modern = (
        "model.options.drop_path=0.1",
        "data.augment=trivialaugment",
        "data.random_erasing=0.25",
        "data.mixup_alpha=0.2",
        "data.cutmix_alpha=1.0",
        "optim.ema_decay=0.9",
        "run.tta=flip-shift",
    )
    code, stdout, err = _train_photos(
        capsys,
        photos,
        out,
        "modern",
        *("--recipe", "fast", "--epochs", "2"),
        *(a for kv in modern for a in ("--set", kv)),
    )
    assert code == 0, err  # it stopped with "images differ in size": a policy skipped sizing
    assert "ImageNet pipeline: stored at shorter side 73" in stdout
    assert "eval centre crop 64; policy trivialaugment" in stdout
    state = yaml.safe_load((out / "modern" / "config.yaml").read_text())
    assert (state["data"]["augment"], state["model"]["options"]["drop_path"]) == (
        "trivialaugment",
        0.1,
    )
    best = load_checkpoint(out / "modern" / "best.pt")
    assert (best["preprocess"]["augment"], best["preprocess"]["policy"]) == (
        "imagenet",
        "trivialaugment",
    )
    assert best["ema_updates"] > 0
    # What was validated (the average, with the run's TTA) is what evaluating the file gives.
    predictor = Predictor.load(out / "modern" / "best.pt", device="cpu")
    metrics, _ = predictor.evaluate(predictor.split("val"))
    assert metrics["top1"] == pytest.approx(best["best_val_top1"])


def test_eval_without_split_uses_test_else_val_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The PyTorch transfer-learning tutorial's train/val folder: ``eval`` with no --split
    measures val and says that val chose the checkpoint; a folder with a test split gets test."""
    photos = _photo_folder(tmp_path / "photos")
    code, _, err = _train_photos(capsys, photos, tmp_path / "runs", "tv", "--iterations", "1")
    assert code == 0, err
    ckpt = tmp_path / "runs" / "tv" / "last.pt"
    code, out, err = cli(capsys, "eval", str(ckpt), "--out", str(tmp_path / "ev"))
    assert code == 0, err
    assert "evaluating on val, which chose the checkpoint" in err and " on val (" in out
    assert (tmp_path / "ev" / "eval-val.json").is_file()
    for cls in ("cats", "dogs"):  # now with a test split: it is the default
        (photos / "test" / cls).mkdir(parents=True)
        for i in range(2):
            _photo(photos / "test" / cls / f"{i}.jpg", (300, 200), "RGB", seed=7 + i)
    code, out, err = cli(capsys, "eval", str(ckpt))
    assert code == 0, err
    assert " on test (4 images)" in out and "val" not in err
    code, out, _ = cli(capsys, "eval", "--help")
    help_text = " ".join(out.split())
    assert "default: the data's test split, else its val split" in help_text
