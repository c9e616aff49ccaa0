"""Image decoding, image folders and archives, splits, augmentation and batching."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from resnetlab.data.augment import (
    Preprocess,
    eval_transform,
    normalize,
    random_crop,
    random_flip,
    train_transform,
)
from resnetlab.data.datasets import load_data, sample_archive
from resnetlab.data.folders import LoadReport, index_folder, load_split, stratified_split
from resnetlab.data.images import ImageError, decode_image
from resnetlab.data.loaders import BatchPlan, TrainBatches
from resnetlab.data.tensors import DataError, ImageTensors, channel_stats


def encode(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def odd_images() -> dict[str, bytes]:
    rgb = Image.new("RGB", (8, 6), (200, 100, 50))
    pal = rgb.convert("P")
    pal_t = pal.copy()
    pal_t.info["transparency"] = 0
    i16 = Image.fromarray(np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000)  # mode I;16
    return {
        "gray.png": encode(rgb.convert("L")),
        "palette.png": encode(pal),
        "palette_transparent.png": encode(pal_t),
        "rgba.png": encode(Image.new("RGBA", (8, 6), (10, 20, 30, 0))),
        "la.png": encode(Image.new("LA", (8, 6), (128, 255))),
        "sixteen.png": encode(i16),
        "cmyk.jpg": encode(Image.new("CMYK", (8, 6), (0, 50, 100, 0)), "JPEG"),
        "bilevel.bmp": encode(Image.new("1", (8, 6), 1), "BMP"),
        "rgb.jpg": encode(rgb, "JPEG"),
    }


@pytest.mark.parametrize(("name", "data"), odd_images().items())
def test_every_mode_decodes_to_rgb(name: str, data: bytes) -> None:
    x = decode_image(data, name)
    assert x.dtype == torch.uint8
    assert x.shape == (3, 6, 8)


def test_modes_convert_sensibly() -> None:
    imgs = odd_images()
    assert decode_image(imgs["rgba.png"], "a").min() == 255  # transparent → white background
    sixteen = decode_image(imgs["sixteen.png"], "s")
    assert sixteen.min() == 0 and sixteen.max() == 183  # 47,000 of 65,535: by bit depth
    assert decode_image(imgs["rgb.jpg"], "r", size=(4, 4)).shape == (3, 4, 4)
    assert decode_image(imgs["rgb.jpg"], "r", channels=1).shape == (1, 6, 8)


def test_corrupt_and_non_images_are_named() -> None:
    good = odd_images()["rgb.jpg"]
    with pytest.raises(ImageError, match="broken.jpg: corrupt"):
        decode_image(good[: len(good) // 2], "broken.jpg")
    with pytest.raises(ImageError, match="notes.png: not an image"):
        decode_image(b"hello, I am text", "notes.png")


def test_decompression_bombs_are_refused() -> None:
    data = encode(Image.new("L", (400, 300)))
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(data, "bomb.png", max_pixels=100_000)


def make_folder(
    root: Path, layout: dict[str, int], *, split_dirs: bool = True, size: int = 8
) -> Path:
    """root/[split/]class/i.png with a colour per class (so classes are learnable)."""
    for key, n in layout.items():
        for i in range(n):
            cls = key.split("/")[-1]
            colour = (hash(cls) % 256, 80, 160)
            folder = root / key if split_dirs or "/" not in key else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (size, size), colour).save(folder / f"{i}.png")
    return root


def test_folder_with_splits_and_without(tmp_path: Path) -> None:
    with_splits = make_folder(
        tmp_path / "a", {"train/cat": 4, "train/dog": 3, "val/cat": 1, "val/dog": 1, "test/dog": 2}
    )
    idx = index_folder(with_splits)
    assert idx.classes == ("cat", "dog")
    assert {k: len(v) for k, v in idx.splits.items()} == {"train": 7, "val": 2, "test": 2}
    flat = make_folder(tmp_path / "b", {"cat": 2, "dog": 2})
    assert set(index_folder(flat).splits) == {"all"}


def test_archive_reads_like_a_folder(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "data", {"train/cat": 3, "train/dog": 3, "test/cat": 1})
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="wrapped")
    a = load_split(index_folder(archive), "train")
    b = load_split(index_folder(folder), "train")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"train/cat": 2}, "at least two classes"),
        ({"train/cat": 1, "train/dog": 1, "test/cow": 1}, "not in train"),
    ],
)
def test_bad_folders(tmp_path: Path, layout: dict[str, int], message: str) -> None:
    make_folder(tmp_path, layout)
    with pytest.raises(DataError, match=message):
        index_folder(tmp_path)


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images found"):
        index_folder(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        index_folder(tmp_path / "nope")


def test_corrupt_files_are_skipped_or_fail(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {"train/cat": 3, "train/dog": 3})
    (folder / "train/cat/bad.png").write_bytes(b"\x89PNG broken")
    idx = index_folder(folder)
    report = LoadReport()
    data = load_split(idx, "train", report=report)
    assert len(data) == 6
    assert report.skipped[0][0].endswith("bad.png")
    with pytest.raises(DataError, match="bad.png"):
        load_split(idx, "train", on_error="fail")


def test_mixed_sizes_need_a_size(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {"train/cat": 2, "train/dog": 2})
    Image.new("RGB", (12, 10)).save(folder / "train/dog/big.png")
    idx = index_folder(folder)
    with pytest.raises(DataError, match="differ in size"):
        load_split(idx, "train")
    assert load_split(idx, "train", size=(8, 8)).images.shape == (5, 3, 8, 8)


def test_stratified_split_is_seeded_and_disjoint() -> None:
    labels = torch.arange(10).repeat_interleave(50)
    images = torch.arange(500, dtype=torch.int64).to(torch.uint8).view(500, 1, 1, 1)
    data = ImageTensors(images.expand(500, 3, 2, 2).contiguous(), labels, tuple("abcdefghij"))
    train, val = stratified_split(data, 0.1, seed=3)
    assert len(val) == 50 and val.class_counts() == [5] * 10
    again_train, again_val = stratified_split(data, 0.1, seed=3)
    assert torch.equal(val.images, again_val.images)
    other = stratified_split(data, 0.1, seed=4)[1]
    assert not torch.equal(val.images, other.images)


def test_channel_stats() -> None:
    x = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    x[:, 0] = 255
    x[:2, 1] = 255
    mean, std = channel_stats(x)
    assert mean == pytest.approx((1.0, 0.5, 0.0))
    assert std == pytest.approx((0.0, 0.5, 0.0), abs=1e-5)


def test_shipped_sample_loads_with_its_own_statistics() -> None:
    assert sample_archive().is_file()
    bundle = load_data("sample")
    assert (len(bundle.train), len(bundle.val)) == (900, 100)
    assert bundle.test is not None and len(bundle.test) == 300
    assert bundle.classes[0] == "airplane" and len(bundle.classes) == 10
    # CIFAR-10's own statistics, not ImageNet's (0.485, 0.456, 0.406).
    assert all(0.40 < m < 0.52 for m in bundle.mean)
    assert bundle.mean != pytest.approx((0.485, 0.456, 0.406), abs=1e-3)


def test_unknown_source() -> None:
    with pytest.raises(DataError, match="no dataset 'mnistt'"):
        load_data("mnistt")


# ---------------------------------------------------------------- augmentation
def test_random_crop_is_a_window_of_the_padded_image() -> None:
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2))
    for n in range(16):
        assert any(
            torch.equal(out[n], padded[n, :, dy : dy + 8, dx : dx + 8])
            for dy in range(5)
            for dx in range(5)
        )


def test_flip_mirrors_about_half() -> None:
    x = torch.arange(1000 * 2, dtype=torch.float32).view(1000, 1, 1, 2)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] > out[:, 0, 0, 1]).float().mean()
    assert 0.4 < float(flipped) < 0.6


def test_transforms_are_repeatable_and_normalise() -> None:
    pre = Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3, image_size=32)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    a = train_transform(x, pre, torch.Generator().manual_seed(1))
    b = train_transform(x, pre, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.equal(eval_transform(x, pre), normalize(x, pre.mean, pre.std))
    assert (
        normalize(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8), pre.mean, pre.std).eq(2).all()
    )
    big = Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3, image_size=128)
    assert train_transform(x, big, None).shape == (8, 3, 128, 128)  # the finetune recipe: 32 → 128


def test_batches_resume_mid_epoch() -> None:
    data = ImageTensors(
        torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8),
        torch.arange(40) % 4,
        ("a", "b", "c", "d"),
    )
    pre = Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3, image_size=8)
    plan, cpu = BatchPlan(8, seed=0, epoch=2), torch.device("cpu")
    whole = list(TrainBatches(data, pre, plan, cpu))
    first = TrainBatches(data, pre, plan, cpu)
    it = iter(first)
    for _ in range(2):
        next(it)
    later = BatchPlan(8, seed=0, epoch=2, start_batch=2, generator_state=first.generator_state())
    rest = list(TrainBatches(data, pre, later, cpu))
    assert len(whole) == 5 and len(rest) == 3
    for (xa, ya), (xb, yb) in zip(whole[2:], rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_large_folders_stream_and_match_memory(tmp_path: Path) -> None:
    """The streamed path (DataLoader workers) yields the same images as the in-memory one."""
    from resnetlab.data.datasets import eval_split_batches
    from resnetlab.data.streaming import FileSplit

    folder = tmp_path / "imgs"
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 12), ("test", 3)):
        for cls in ("cat", "dog"):
            (folder / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 256, (16, 16, 3), generator=g, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / split / cls / f"{i}.png")
    (folder / "train/cat/broken.png").write_bytes(b"\x89PNG nope")
    mem = load_data(str(folder), in_memory=True, cache=False)
    disk = load_data(str(folder), in_memory=False, load_size=16)
    assert isinstance(disk.train, FileSplit) and isinstance(mem.train, ImageTensors)
    assert len(disk.test or []) == 6
    pre = Preprocess(mean=mem.mean, std=mem.std, image_size=16)
    cpu = torch.device("cpu")
    assert mem.test is not None and disk.test is not None
    a = list(eval_split_batches(mem.test, pre, batch_size=4, device=cpu))
    b = list(eval_split_batches(disk.test, pre, batch_size=4, device=cpu))
    assert all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )
    # The corrupt file is skipped in a streamed epoch, not fatal.
    seen = sum(len(y) for _, y in disk.train.train_batches(pre, BatchPlan(4, seed=0, epoch=0), cpu))
    assert 0 < seen <= len(disk.train)


def test_a_corrupt_first_image_does_not_fail_the_folder(tmp_path: Path) -> None:
    """load_data reads one image's header to size the data: a corrupt file in first place
    is skipped there (and reported by decoding) instead of failing the whole folder."""
    folder = make_folder(tmp_path, {"train/cat": 3, "train/dog": 3, "test/cat": 1, "test/dog": 1})
    first = next(iter(index_folder(folder).splits.values()))[0][0]
    (folder / first).write_bytes(b"\x89PNG broken")
    bundle = load_data(str(folder), cache=False)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 7  # 8 files, one bad
    assert [name for name, _ in bundle.skipped] == [first]


# ---------------------------------------------------------------- policies, erasing, mixing
@pytest.mark.parametrize(
    "op",
    [
        "shear_x",
        "shear_y",
        "translate_x",
        "translate_y",
        "rotate",
        "brightness",
        "color",
        "contrast",
        "sharpness",
        "posterize",
        "solarize",
        "autocontrast",
        "equalize",
        "invert",
    ],
)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_policy_ops_keep_dtype_range_and_shape(op: str, dtype: torch.dtype) -> None:
    from resnetlab.data.policies import OPS, apply_ops, magnitudes

    x = torch.randint(0, 256, (6, 3, 12, 10), generator=torch.Generator().manual_seed(0))
    x = x.to(dtype)
    table = magnitudes("trivialaugment", 31, 10)
    strongest = table[op][-1] if op in table else torch.tensor(0.0)
    strength = torch.tensor([strongest, -strongest, 0.0, strongest, strongest, 0.5])
    ops = torch.full((6,), OPS.index(op))
    out = apply_ops(x.float(), ops, strength)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 255
    if op != "equalize":  # 120 pixels: PIL's equalisation leaves so sparse a histogram alone
        assert not torch.equal(out, x.float())  # the op did something


def test_equalize_flattens_the_histogram() -> None:
    from resnetlab.data.policies import equalize

    x = torch.randint(100, 120, (2, 1, 32, 32)).float()  # a narrow, low-contrast image
    out = equalize(x, torch.zeros(2))
    assert float(out.max() - out.min()) > 200
    assert (out.diff(dim=-1).sign() * x.diff(dim=-1).sign()).min() >= 0  # order kept


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment", "autoaugment"])
def test_policies_are_repeatable_and_keep_dtype_range_shape(policy: str) -> None:
    from resnetlab.data.policies import augment_policy

    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a = augment_policy(x, policy, torch.Generator().manual_seed(3))
    b = augment_policy(x, policy, torch.Generator().manual_seed(3))
    c = augment_policy(x, policy, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.uint8 and a.shape == x.shape
    changed = (a != x).flatten(1).any(dim=1).float().mean()
    assert 0.3 < float(changed) < 1.0  # most images changed, identity draws kept some
    f = augment_policy(x.float() + 0.25, policy, torch.Generator().manual_seed(3))
    assert f.dtype == torch.float32 and f.shape == x.shape
    assert float(f.min()) >= 0 and float(f.max()) <= 255
    assert torch.equal(augment_policy(x, "none", None), x)


def test_augment_keys_pick_the_base_and_leave_old_pipelines_alone() -> None:
    from resnetlab.data.augment import split_augment

    assert split_augment("trivialaugment", 32, 32) == ("cifar", "trivialaugment")
    assert split_augment("randaugment", 256, 224) == ("imagenet", "randaugment")
    assert split_augment("cifar", 32, 32) == ("cifar", "none")
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    old = Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3, image_size=32)
    g = torch.Generator().manual_seed(1)
    got = train_transform(x, old, g)
    ref = torch.Generator().manual_seed(1)  # the pipeline as it was: crop, flip, normalise
    want = normalize(random_flip(random_crop(x, 4, ref), ref), old.mean, old.std)
    assert torch.equal(got, want) and torch.equal(g.get_state(), ref.get_state())
    for augment in ("cifar", "imagenet"):
        pre = Preprocess(
            mean=(0.5,) * 3,
            std=(0.25,) * 3,
            image_size=32,
            augment=augment,
            policy="trivialaugment",
            random_erasing=0.5,
        )
        out = train_transform(x, pre, torch.Generator().manual_seed(0))
        assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32


def test_random_erasing_boxes() -> None:
    from resnetlab.data.augment import random_erasing

    x = torch.ones(400, 3, 32, 32)
    out = random_erasing(x, 0.5, torch.Generator().manual_seed(0))
    erased = (out == 0).all(dim=1).flatten(1).sum(dim=1).float() / (32 * 32)
    assert 0.4 < float((erased > 0).float().mean()) < 0.6
    hit = erased[erased > 0]
    assert float(hit.min()) >= 0.01 and float(hit.max()) <= 0.34  # 2-33% of the area
    assert torch.equal(out, random_erasing(x, 0.5, torch.Generator().manual_seed(0)))
    assert random_erasing(x, 0.0, None) is x


def test_mixup_label_mass_sums_to_one() -> None:
    from resnetlab.data.augment import mix_batch

    pre = Preprocess(mean=(0.5,), std=(0.25,), image_size=8, mixup_alpha=0.4)
    x, y = torch.rand(16, 3, 8, 8), torch.arange(16) % 10
    mixed, target = mix_batch(x, y, 10, pre, torch.Generator().manual_seed(0))
    assert target.shape == (16, 10)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(16))
    lam = float(target[0, y[0]])  # image 0's own share (its partner, image 15, is class 5)
    assert 0 < lam < 1
    torch.testing.assert_close(mixed[0], lam * x[0] + (1 - lam) * x[15])
    torch.testing.assert_close(target[0, 5], torch.tensor(1 - lam))
    same = mix_batch(x, y, 10, pre, torch.Generator().manual_seed(0))
    assert torch.equal(same[0], mixed) and torch.equal(same[1], target)
    off = Preprocess(mean=(0.5,), std=(0.25,), image_size=8)
    assert mix_batch(x, y, 10, off, None) == (x, y)


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_boxes_have_the_sampled_area(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnetlab.data import augment

    drawn: list[float] = []
    real = augment._beta

    def spy(alpha: float, generator: torch.Generator | None) -> float:
        drawn.append(real(alpha, generator))
        return drawn[-1]

    monkeypatch.setattr(augment, "_beta", spy)
    pre = Preprocess(
        mean=(0.5,),
        std=(0.25,),
        image_size=32,
        cutmix_alpha=1.0,
        mixup_alpha=0.2,
        mix_switch_prob=1.0,
    )
    x = torch.zeros(4, 1, 32, 40)
    x[2:] = 1.0  # images 0, 1 are black; their partners (3, 2) white
    y = torch.tensor([0, 1, 2, 3])
    mixed, target = augment.mix_batch(x, y, 4, pre, torch.Generator().manual_seed(seed))
    pasted = mixed[0].mean()  # the share of image 0 that came from image 3
    assert abs(float(pasted) - (1 - drawn[0])) <= 2 * (32 + 40) / (32 * 40)  # rounding of a side
    torch.testing.assert_close(target[0], torch.tensor([1 - float(pasted), 0, 0, float(pasted)]))
    torch.testing.assert_close(target.sum(dim=1), torch.ones(4))
    box = (mixed[0, 0] == 1).nonzero()
    rows, cols = box[:, 0], box[:, 1]
    if len(box):  # one solid rectangle
        assert len(box) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)


def test_soft_targets_compose_with_label_smoothing() -> None:
    logits = torch.randn(5, 4)
    hard = torch.tensor([0, 1, 2, 3, 0])
    soft = F.one_hot(hard, 4).float()
    loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    torch.testing.assert_close(loss(logits, soft), loss(logits, hard))


# ---------------------------------------------------------------- the decoded cache
def _cache_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    """A folder with its own val/ split and a private cache; returns (folder, cache root)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNETLAB_CACHE", str(cache))
    layout = {"train/cat": 5, "train/dog": 5, "val/cat": 2, "val/dog": 2}
    folder = make_folder(tmp_path / "data", layout)
    (folder / "train/dog/broken.png").write_bytes(b"\x89PNG broken")
    return folder, cache


def _damage_cache(entry: Path, kind: str) -> None:
    manifest = entry / "manifest.json"
    if kind == "partial":  # the write died after train.pt (a full disk, a kill)
        (entry / "val.pt").rename(entry / ".val.pt.tmp")
        manifest.unlink()
    elif kind == "split-missing":
        (entry / "val.pt").unlink()
    elif kind == "truncated":
        data = (entry / "train.pt").read_bytes()
        (entry / "train.pt").write_bytes(data[: len(data) // 2])
    elif kind == "same-size-other-bytes":
        data = bytearray((entry / "train.pt").read_bytes())
        data[len(data) // 2] ^= 0x01
        (entry / "train.pt").write_bytes(bytes(data))
    elif kind == "other-version":
        meta = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({**meta, "version": -1}))
    elif kind == "manifest-garbage":
        manifest.write_text("{not json")
    else:
        raise AssertionError(kind)


CACHE_DAMAGE = ["partial", "split-missing", "truncated", "same-size-other-bytes"]
CACHE_DAMAGE += ["other-version", "manifest-garbage"]


@pytest.mark.parametrize("kind", CACHE_DAMAGE)
def test_a_damaged_cache_entry_is_rebuilt_never_trusted(
    kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A cache entry is complete, verified and atomic as a whole, or ignored: a partial
    entry once made the next run re-split the data itself (train 221, val 24 instead of
    the data's own val/ split) and exit 0."""
    folder, cache = _cache_entry(monkeypatch, tmp_path)
    fresh = load_data(str(folder))
    assert fresh.val_note == "the data's own val/ split"
    (entry,) = (cache / "decoded").iterdir()
    cached = load_data(str(folder))  # from the cache: the same, skipped files included
    assert torch.equal(cached.train.images, fresh.train.images)
    assert [n for n, _ in cached.skipped] == [n for n, _ in fresh.skipped] != []
    _damage_cache(entry, kind)
    again = load_data(str(folder))
    assert again.val_note == "the data's own val/ split"
    assert (len(again.train), len(again.val)) == (len(fresh.train), len(fresh.val)) == (10, 4)
    assert torch.equal(again.train.images, fresh.train.images)
    assert torch.equal(again.val.images, fresh.val.images)
    assert [p.name for p in (cache / "decoded").iterdir()] == [entry.name]  # rebuilt whole
    assert sorted(p.name for p in entry.iterdir()) == ["manifest.json", "train.pt", "val.pt"]


def test_a_full_disk_while_caching_leaves_no_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """torch reports ENOSPC as a RuntimeError (not the OSError the cache code caught): the
    run goes on with its decoded data, and no partial entry or temporary folder is left."""
    folder, cache = _cache_entry(monkeypatch, tmp_path)
    real_save = torch.save
    calls = []

    def full_disk(obj: object, f: object, *args: object, **kw: object) -> None:
        calls.append(f)
        if len(calls) == 2:  # the second split: the first is already on disk
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
        real_save(obj, f, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "save", full_disk)
    bundle = load_data(str(folder))
    assert (len(bundle.train), len(bundle.val)) == (10, 4)
    assert len(calls) == 2
    assert list((cache / "decoded").iterdir()) == []
    monkeypatch.setattr(torch, "save", real_save)
    assert load_data(str(folder)).val_note == "the data's own val/ split"
    assert len(list((cache / "decoded").iterdir())) == 1
