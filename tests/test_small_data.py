"""Small data that just works (issue 31): ``--limit-per-class`` limits what is decoded and
every split it touches; a batch larger than a split is reduced to fit, saying so; the last
partial batch is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import cli, tiny_train
from resnetlab.data import folders
from resnetlab.data.augment import Preprocess
from resnetlab.data.datasets import load_data
from resnetlab.data.loaders import BatchPlan, EpochShape, TrainBatches, epoch_shape, shard_order
from resnetlab.data.tensors import ImageTensors
from test_data import make_folder


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = folders.decode_image

    def counting(data: bytes, name: str, **kw: object) -> torch.Tensor:
        seen.append(name)
        return real(data, name, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(folders, "decode_image", counting)
    return seen


def test_limit_decodes_only_what_every_split_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder(
        tmp_path / "d", {"train/cat": 30, "train/dog": 30, "test/cat": 9, "test/dog": 9}
    )
    seen = _count_decodes(monkeypatch)
    b = load_data(str(root), limit=3, seed=1)
    assert b.train.class_counts() == [3, 3]
    assert b.val.class_counts() == [3, 3]  # 10% of 30 held out, then at most 3
    assert b.test is not None and b.test.class_counts() == [3, 3]
    assert len(seen) == 18  # not 78
    # The same subset again comes from the decoded cache (nothing decoded) and is equal.
    again = load_data(str(root), limit=3, seed=1)
    assert len(seen) == 18
    assert torch.equal(again.train.labels, b.train.labels)
    # The whole folder is not answered by the subset's cache entry.
    whole = load_data(str(root), seed=1)
    assert len(whole.train) == 54 and whole.test is not None and len(whole.test) == 18
    assert len(seen) == 18 + 78
    # Another limit is another entry.
    four = load_data(str(root), limit=4, seed=1)
    assert four.train.class_counts() == [4, 4]


def test_limit_picks_a_subset_of_the_unlimited_splits(tmp_path: Path) -> None:
    """A limited run's val images are among the unlimited run's val images, and its train
    images among its train images: limiting never moves an image from val to train."""
    root = make_folder(tmp_path / "d", {"cat": 20, "dog": 20}, split_dirs=False)
    for i in range(20):  # each image unique, to tell them apart
        from PIL import Image

        Image.new("RGB", (8, 8), (i * 10, 0, 0)).save(root / "cat" / f"{i}.png")
        Image.new("RGB", (8, 8), (0, i * 10, 0)).save(root / "dog" / f"{i}.png")
    full = load_data(str(root), seed=3, cache=False)
    small = load_data(str(root), seed=3, cache=False, limit=2)

    def keys(split: object) -> set[tuple[int, ...]]:
        imgs = split.images  # type: ignore[attr-defined]
        return {tuple(x[:, 0, 0].tolist()) for x in imgs}

    assert keys(small.val) <= keys(full.val)
    assert keys(small.train) <= keys(full.train)
    assert "held out" in small.val_note


def test_limit_on_cifar_names_limits_val_and_test(tmp_path: Path) -> None:
    from cifar_writers import write_cifar_python

    def some(n: int, seed: int) -> ImageTensors:
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        return ImageTensors(images, torch.arange(n) % 10, tuple(f"c{i}" for i in range(10)))

    write_cifar_python(tmp_path, "cifar10", some(200, 1), some(60, 2))
    b = load_data("cifar10", root=str(tmp_path), limit=2)
    assert max(b.train.class_counts()) <= 2
    assert max(b.val.class_counts()) <= 2
    assert b.test is not None and max(b.test.class_counts()) <= 2


# ---------------------------------------------------------------- batches that fit
def test_the_last_smaller_batch_is_kept_and_shared_like_a_single_process() -> None:
    assert epoch_shape(50, 32) == EpochShape(full=1, last=18, dropped=0)
    assert epoch_shape(33, 32) == EpochShape(full=1, last=0, dropped=1)  # BN needs 2
    assert epoch_shape(50, 8, world_size=3) == EpochShape(full=2, last=0, dropped=2)
    assert epoch_shape(60, 8, world_size=3).last == 4
    order = torch.randperm(60)
    parts = [shard_order(order, 8, r, 3) for r in range(3)]
    assert all(len(p) == 8 * 2 + 4 for p in parts)
    # Global batch by global batch, the ranks' parts are the single process's batches.
    single = shard_order(order, 24)
    assert torch.equal(torch.cat([p[16:] for p in parts]), single[48:])
    plan = BatchPlan(batch_size=32, seed=0, epoch=1)
    data = ImageTensors(
        torch.zeros(50, 3, 4, 4, dtype=torch.uint8), torch.arange(50) % 2, ("a", "b")
    )
    pre = Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3, image_size=4, augment="cifar", padding=0)
    sizes = [len(y) for _, y in TrainBatches(data, pre, plan, torch.device("cpu"))]
    assert sizes == [32, 18]


def test_a_batch_larger_than_the_data_is_reduced_saying_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = tiny_train(
        "--epochs", "1", "--out", str(tmp_path), "--name", "b", per_class=5, batch=128
    )
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    said = [line for line in (out + err).splitlines() if "is larger than the" in line]
    assert len(said) == 1 and "data.batch_size 128" in said[0] and "batches of 50" in said[0]
    assert "1 steps/epoch" in out + err
    assert "batch_size: 50" in (tmp_path / "b" / "config.yaml").read_text()  # what was used


def test_the_last_partial_batch_trains(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = tiny_train("--epochs", "1", "--out", str(tmp_path), "--name", "p", per_class=5, batch=32)
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    assert "2 steps/epoch" in out + err  # 50 images: 32 + 18, not "1 steps/epoch"


def test_too_few_images_for_a_batch_is_bad_input(log_lines: list[str]) -> None:
    from resnetlab.errors import InvalidValueError
    from resnetlab.runtime.config import resolve_config
    from resnetlab.train.distributed import fit_batches

    cfg = resolve_config("fast", {"data.batch_size": 128})
    said = log_lines
    assert fit_batches(cfg, 7, 2).data.batch_size == 3
    assert said == [
        "data.batch_size 128 is larger than the 7 training images shared by 2 processes: "
        "using batches of 3"
    ]
    with pytest.raises(
        InvalidValueError, match="3 training images shared by 2 processes are too few"
    ):
        fit_batches(cfg, 3, 2)
