"""One entry point for training data: ``load_data(source, …)`` → train/val/test tensors.

Sources: ``cifar10`` / ``cifar100`` (official distribution, downloaded on request),
``sample`` (the small CIFAR-10 sample this package ships), or a folder / ``.tar(.gz)``
archive of images. Decoded tensors are cached (:mod:`~resnetlab.data.decoded_cache`), so a
second run starts in a second; a folder too large for memory is streamed from disk.

This module owns the sources, the splits (val held out, the per-class limit) and the
batches over them; the pipeline a source's images call for is :mod:`~resnetlab.data.pipeline`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TypeVar

import torch

from resnetlab.data.augment import Preprocess
from resnetlab.data.decoded_cache import load_folder
from resnetlab.data.folders import FolderIndex, index_folder, is_archive, stratified_split
from resnetlab.data.pipeline import CIFAR_NAMES, SAMPLE, probe_index_side
from resnetlab.data.streaming import FileSplit
from resnetlab.data.tensors import (
    DataError,
    Labelled,
    Split,
    channel_stats,
    shuffled_per_class,
)
from resnetlab.fileio import cache_root

# Decoded uint8 data up to this size is held in memory; a larger folder is streamed.
MEMORY_BUDGET_BYTES = 4 * 1024**3
STREAM_SIZE = 256  # default decoded side of streamed images (ImageNet-style: 224 crops)


def sample_archive() -> Path:
    """The CIFAR-10 sample shipped with the package (JPEG, as in the shared rendition)."""
    return Path(str(resources.files("resnetlab.data") / "sample" / "cifar10-sample.tar"))


@dataclass(frozen=True)
class DataBundle:
    """The three splits, class names and the training split's own statistics."""

    train: Split
    val: Split
    test: Split | None
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    val_note: str  # where the validation split came from
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _file_splits(index: FolderIndex, size: int, interpolation: str) -> dict[str, FileSplit]:
    label_of = {c: i for i, c in enumerate(index.classes)}
    return {
        split: FileSplit(
            index.source,
            tuple(n for n, _ in items),
            torch.tensor([label_of[c] for _, c in items], dtype=torch.int64),
            index.classes,
            size,
            interpolation,
        )
        for split, items in index.splits.items()
    }


S = TypeVar("S", bound=Labelled)


def limit_per_class(data: S, limit: int, *, seed: int) -> S:
    """At most ``limit`` images of each class (a seeded random choice)."""
    keep = [idx[:limit] for idx in shuffled_per_class(data, seed=seed)]
    return data.subset(torch.cat(keep).sort().values)


def _limited(data: S | None, limit: int | None, seed: int) -> S | None:
    return data if data is None or limit is None else limit_per_class(data, limit, seed=seed)


@dataclass(frozen=True)
class Choice:
    """How the splits are chosen: ``val_fraction`` of train held out with ``seed`` (where
    the data has no val split), then at most ``limit`` images of each class in every split."""

    val_fraction: float
    seed: int
    limit: int | None
    all_splits: bool = True  # False: ``limit`` limits train alone (earlier code's way)


@dataclass(frozen=True)
class IndexSplit:
    """One split of a folder's file list, as labels only: the splits are chosen on it
    (the same seeded choice as on decoded images) before anything is decoded."""

    items: tuple[tuple[str, str], ...]
    classes: tuple[str, ...]

    @property
    def labels(self) -> torch.Tensor:
        label_of = {c: i for i, c in enumerate(self.classes)}
        return torch.tensor([label_of[c] for _, c in self.items], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, index: torch.Tensor) -> IndexSplit:
        return IndexSplit(tuple(self.items[i] for i in index.tolist()), self.classes)


def limited_index(index: FolderIndex, chosen: Choice, source: str) -> tuple[FolderIndex, str]:
    """``index`` cut to what a run with ``chosen.limit`` uses (train, val and test, each at
    most ``limit`` images a class), so only those files are decoded; and the val note."""
    splits = {k: IndexSplit(tuple(v), index.classes) for k, v in index.splits.items()}
    train, val, note = _train_and_val(source, dict(splits), chosen)
    kept = {"train": train, "val": val}
    if "test" in splits:
        kept["test"] = limit_per_class(splits["test"], chosen.limit or 0, seed=chosen.seed)
    return replace(index, splits={k: list(v.items) for k, v in kept.items()}), note


def load_data(
    source: str,
    *,
    root: str | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    load_size: int | None = None,
    interpolation: str = "bilinear",
    on_error: str = "skip",
    cache: bool = True,
    limit: int | None = None,
    limit_all: bool = True,
    in_memory: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> DataBundle:
    """Load a dataset's train/val/test splits as uint8 tensors.

    Without a ``val`` split in the data, ``val_fraction`` of every training class is held
    out with ``seed`` (the same images on every run with that seed). ``limit`` caps the
    images per class of every split (after the validation split is cut; with
    ``limit_all=False``, of the training split alone). A folder whose decoded
    images would exceed :data:`MEMORY_BUDGET_BYTES` (or ``in_memory=False``) is streamed
    from disk by ``DataLoader`` workers at ``load_size`` (default 256) instead. Resizing
    uses the ``interpolation`` filter (``"bilinear"`` or ``"bicubic"``).
    """
    skipped: list[tuple[str, str]] = []
    chosen = Choice(val_fraction, seed, limit, limit_all)
    note = ""
    if source in CIFAR_NAMES:
        splits, label = _cifar_splits(source, root=root, download=download)
    else:
        splits, label, skipped, note = _image_splits(
            source,
            load_size=load_size,
            interpolation=interpolation,
            on_error=on_error,
            cache=cache,
            in_memory=in_memory,
            progress=progress,
            chosen=chosen,
        )
    train, val, val_note = _train_and_val(source, splits, chosen)
    val_note = note or val_note
    mean, std = channel_stats(train.stats_images(seed=seed))
    return DataBundle(
        train=train,
        val=val,
        test=_limited(splits.get("test"), limit if limit_all else None, seed),
        classes=train.classes,
        mean=mean,
        std=std,
        source=label,
        val_note=val_note,
        skipped=skipped,
    )


def _cifar_splits(source: str, *, root: str | None, download: bool) -> tuple[dict[str, Split], str]:
    """CIFAR-10/100's official splits from ``root`` (default: the cache), and their label."""
    from resnetlab.data.cifar import load_cifar

    folder = Path(root).expanduser() if root else cache_root() / "data" / source
    splits: dict[str, Split] = dict(load_cifar(source, folder, download=download))
    return splits, f"{source} (official distribution, {folder})"


def _image_splits(
    source: str,
    *,
    load_size: int | None,
    interpolation: str,
    on_error: str,
    cache: bool,
    in_memory: bool | None,
    progress: Callable[[str], None] | None,
    chosen: Choice,
) -> tuple[dict[str, Split], str, list[tuple[str, str]], str]:
    """The splits of the shipped sample, a folder or an archive, decoded into memory (through
    the cache) or, for a folder over :data:`MEMORY_BUDGET_BYTES`, streamed from disk; their
    label; the files skipped; the val note where the splits were chosen before decoding
    (``chosen.limit``: only the files a limited run uses are decoded)."""
    path = sample_archive() if source == SAMPLE else Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"no dataset {source!r}: not cifar10, cifar100, sample, nor an "
            "existing folder or archive"
        )
    label = "shipped CIFAR-10 sample (JPEG rendition)" if source == SAMPLE else str(path)
    stream = in_memory is False
    index = None
    if in_memory is None and path.is_dir():
        index = index_folder(path)
        side = load_size or probe_index_side(index)
        total = sum(len(v) for v in index.splits.values())
        stream = total * 3 * side * side > MEMORY_BUDGET_BYTES
    if stream and is_archive(path):
        raise DataError(
            f"{path} is too large to decode into memory; unpack it and train on the "
            "folder (it is then streamed from disk)"
        )
    if stream:
        streamed: dict[str, Split] = dict(
            _file_splits(index or index_folder(path), load_size or STREAM_SIZE, interpolation)
        )
        return streamed, label + " (streamed from disk)", [], ""
    note, subset = "", ""
    if chosen.limit is not None and chosen.all_splits:
        index, note = limited_index(index or index_folder(path), chosen, source)
        subset = _selection_key(index, chosen)
    decoded, skipped = load_folder(
        path,
        index=index,
        load_size=load_size,
        interpolation=interpolation,
        on_error=on_error,
        cache=cache,
        progress=progress,
        subset=subset,
    )
    return dict(decoded), label, skipped, note


def _selection_key(index: FolderIndex, chosen: Choice) -> str:
    """What a limited run decodes, for the decoded cache's key (an entry of a subset never
    answers for another subset, nor for the whole folder)."""
    import hashlib

    h = hashlib.sha256(repr(sorted(index.splits.items())).encode())
    return f"limit{chosen.limit}/seed{chosen.seed}/{h.hexdigest()[:16]}"


def _train_and_val(source: str, splits: dict[str, S], chosen: Choice) -> tuple[S, S, str]:
    """The training and validation splits, and where the validation split came from: the
    data's own, or ``val_fraction`` of every training class held out with ``seed``; then
    at most ``limit`` images per class in each."""
    train = splits.get("train", splits.get("all"))
    if train is None:
        raise DataError(f"{source}: no training split")
    seed, limit = chosen.seed, chosen.limit
    if "val" in splits:
        val, val_note = splits["val"], "the data's own val/ split"
    else:
        train, val = stratified_split(train, chosen.val_fraction, seed=seed)
        val_note = f"{chosen.val_fraction:.0%} of train held out per class (seed {seed})"
    if limit is not None:
        train = limit_per_class(train, limit, seed=seed)
        val = limit_per_class(val, limit, seed=seed) if chosen.all_splits else val
    if len(val) == 0:
        raise DataError(f"{source}: the validation split is empty (too few images per class)")
    return train, val, val_note


def eval_split_batches(
    data: Split, pre: Preprocess, *, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every image of a split once, in order, without augmentation."""
    return data.eval_batches(pre, batch_size=batch_size, device=device)


def on_device(bundle: DataBundle, device: torch.device) -> DataBundle:
    """Move the in-memory splits to ``device`` (streamed splits stay on disk), so batching
    and augmentation run there without host-to-device copies every step."""

    def move(split: Split | None) -> Split | None:
        return None if split is None else split.to(device)

    train, val = move(bundle.train), move(bundle.val)
    assert train is not None
    assert val is not None
    return replace(bundle, train=train, val=val, test=move(bundle.test))
