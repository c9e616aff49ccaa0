"""One entry point for training data: ``load_data(source, …)`` → train/val/test tensors.

Sources: ``cifar10`` / ``cifar100`` (official distribution, downloaded on request),
``sample`` (the small CIFAR-10 sample this package ships), or a folder / ``.tar(.gz)``
archive of images. Decoded tensors are cached, so a second run starts in a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from resnetlab.data.augment import Augment, Preprocess
from resnetlab.data.folders import (
    FolderIndex,
    LoadReport,
    index_folder,
    is_archive,
    load_split,
    stratified_split,
    walk_files,
)
from resnetlab.data.images import IMAGE_SUFFIXES
from resnetlab.data.streaming import FileSplit
from resnetlab.data.tensors import (
    Batches,
    DataError,
    ImageTensors,
    Split,
    channel_stats,
    shuffled_per_class,
)
from resnetlab.errors import first_line
from resnetlab.fileio import cache_root

SAMPLE = "sample"
CIFAR_NAMES = ("cifar10", "cifar100")
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


def _fingerprint(path: Path, extra: str) -> str:
    h = hashlib.sha256(f"{path.resolve()}|{extra}".encode())
    if path.is_dir():
        for dirpath, f in sorted(walk_files(path)):  # as indexed: linked folders too
            file = os.path.join(dirpath, f)
            st = os.stat(file) if os.path.exists(file) else os.lstat(file)  # dangling link
            h.update(f"{dirpath}/{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        st = path.stat()
        h.update(f"{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


# The decoded cache's layout and meaning; an entry written by another version is rebuilt.
CACHE_VERSION = 3
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_cache(
    entry: Path,
) -> tuple[dict[str, ImageTensors], list[tuple[str, str]]] | None:
    """A complete, verified cache entry, or None. An entry is its manifest (written last)
    plus one file per split, each with the size, SHA-256 and image count the manifest
    records: a write cut short (a full disk, a kill), a truncated file or another version's
    entry is rebuilt, never trusted (a missing ``val.pt`` once silently re-split the data)."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("version") != CACHE_VERSION:
            return None
        splits = {}
        for name, meta in manifest["splits"].items():
            file = entry / f"{name}.pt"
            if file.stat().st_size != meta["bytes"] or _sha256(file) != meta["sha256"]:
                return None
            splits[name] = ImageTensors.load(file)
            if len(splits[name]) != meta["images"]:
                return None
        skipped = [(str(n), str(r)) for n, r in manifest.get("skipped", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # DataError (a damaged .pt) is a ValueError
    return (splits, skipped) if splits else None


def _write_cache(
    entry: Path, splits: dict[str, ImageTensors], skipped: list[tuple[str, str]]
) -> None:
    """Write a cache entry as a whole: into a temporary folder beside it (split files, then
    the manifest), renamed into place at the end. A failure — an ``OSError``, or the
    ``RuntimeError`` torch raises for a full disk — leaves no entry and no temporary folder
    (the next run decodes again)."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_temps(entry)
        suffix = f".{os.getpid()}.tmp"
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=suffix, dir=entry.parent))
    except OSError:
        return
    try:
        meta = {}
        for name, data in splits.items():
            file = tmp / f"{name}.pt"
            data.save(file)
            meta[name] = {"bytes": file.stat().st_size, "sha256": _sha256(file)}
            meta[name]["images"] = len(data)
        manifest = {"version": CACHE_VERSION, "splits": meta, "skipped": skipped}
        (tmp / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        if entry.exists():  # an incomplete or stale entry: replaced by the verified one
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    except (OSError, RuntimeError):
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_dead_temps(entry: Path) -> None:
    """Temporary folders of this entry whose writer died (the pid ends the name)."""
    for tmp in entry.parent.glob(f".{entry.name}.*.tmp"):
        try:
            os.kill(int(tmp.name.rsplit(".", 2)[-2]), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, OSError):
            pass  # not ours, or alive under another user


def _load_folder(
    path: Path,
    *,
    index: FolderIndex | None,
    load_size: int | None,
    on_error: str,
    cache: bool,
    progress: Callable[[str], None] | None,
) -> tuple[dict[str, ImageTensors], list[tuple[str, str]]]:
    key = _fingerprint(path, f"{load_size}|{on_error}|v{CACHE_VERSION}")
    cached = cache_root() / "decoded" / key if cache else Path()
    if cache and cached.is_dir():
        hit = _read_cache(cached)
        if hit is not None:
            return hit
        if progress is not None:
            progress(f"ignoring the incomplete or outdated decoded cache {cached}")
    index = index or index_folder(path)
    if index.ignored and on_error == "fail":
        name, reason = index.ignored[0]
        raise DataError(f"{path}: {name}: {reason}")
    report = LoadReport(list(index.ignored))
    size = (load_size, load_size) if load_size else None
    splits = {}
    for split in index.splits:
        if progress is not None:
            progress(f"decoding {len(index.splits[split]):,} {split} images from {path}")
        splits[split] = load_split(
            index, split, size=size, crop=True, on_error=on_error, report=report
        )
    if cache:  # a read-only or full cache folder only costs the next run its decoding time
        _write_cache(cached, splits, report.skipped)
    return splits, report.skipped


def _probe_side(index: FolderIndex, tries: int = 20) -> int:
    """The larger side of the first readable image (a cheap header read), to size the data.
    Unreadable files are skipped here; decoding reports them (or fails, per ``on_error``)."""
    from PIL import Image, UnidentifiedImageError

    names = [name for items in index.splits.values() for name, _ in items[:tries]][:tries]
    first_error = ""
    for name in names:
        try:
            with Image.open(index.source / name) as im:
                return max(im.size)
        except UnidentifiedImageError:
            first_error = first_error or f"{name}: not an image Pillow can read"
        except (OSError, ValueError) as err:
            first_error = first_error or f"{name}: {first_line(err)}"
    raise DataError(
        f"{index.source}: none of the first {len(names)} images can be read ({first_error})"
    )


# Images up to this side are CIFAR-like (pad-and-crop); larger ones are photos.
SMALL_SIDE = 64
PHOTO_INPUT = 224  # a photo run's default input side (the ImageNet crop)


@dataclass(frozen=True)
class Pipeline:
    """The data pipeline a run takes, chosen from the first image (``augment="auto"``).

    Photos: stored with the shorter side at ``load_size`` (the centre square; 256 for a
    224 input, i.e. ``image_size / 0.875``), trained on random-resized crops + flips,
    evaluated on the centre crop. Small images (≤ :data:`SMALL_SIDE` px): stored as they
    are, pad-and-crop + flips (He et al. 2015 §4.2).
    """

    augment: Augment
    image_size: int | None
    load_size: int | None
    probed_side: int | None  # the larger side of the first image (None: a CIFAR name)

    def describe(self) -> str:
        seen = f"first image {self.probed_side} px" if self.probed_side else "CIFAR"
        if self.augment == "imagenet":
            return (
                f"data pipeline: photos ({seen}) → ImageNet pipeline: stored at shorter side "
                f"{self.load_size} (centre square); train random-resized crop "
                f"{self.image_size} + flip; eval centre crop {self.image_size}"
            )
        size = f", resized to {self.image_size}" if self.image_size else ""
        return f"data pipeline: small images ({seen}) → pad-and-crop + flip{size}"


def probe_side(source: str) -> int | None:
    """The larger side of the first readable image of a folder or archive (a header read);
    None for the CIFAR names and the shipped sample (32×32)."""
    from PIL import Image

    if source in CIFAR_NAMES or source == SAMPLE:
        return None
    path = Path(source).expanduser()
    if path.is_dir():
        return _probe_side(index_folder(path))
    if is_archive(path):
        import io
        import tarfile

        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                        f = tar.extractfile(member)
                        with Image.open(io.BytesIO(f.read() if f else b"")) as im:
                            return max(im.size)
        except (tarfile.TarError, OSError, EOFError, ValueError):
            return None  # loading reports the archive's problem, in one line
    return None


def choose_pipeline(source: str, *, image_size: int | None, load_size: int | None) -> Pipeline:
    """Photos or small images, from ``source``'s first image (see :class:`Pipeline`)."""
    side = probe_side(source)
    if side is None or side <= SMALL_SIDE:
        return Pipeline("cifar", image_size, load_size, side)
    size = image_size or PHOTO_INPUT
    return Pipeline("imagenet", size, load_size or round(size / 0.875), side)


def _file_splits(index: FolderIndex, size: int) -> dict[str, FileSplit]:
    label_of = {c: i for i, c in enumerate(index.classes)}
    return {
        split: FileSplit(
            index.source,
            tuple(n for n, _ in items),
            torch.tensor([label_of[c] for _, c in items], dtype=torch.int64),
            index.classes,
            size,
        )
        for split, items in index.splits.items()
    }


def limit_per_class(data: Split, limit: int, *, seed: int) -> Split:
    """At most ``limit`` images of each class (a seeded random choice)."""
    keep = [idx[:limit] for idx in shuffled_per_class(data, seed=seed)]
    return data.subset(torch.cat(keep).sort().values)


def load_data(
    source: str,
    *,
    root: str | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    load_size: int | None = None,
    on_error: str = "skip",
    cache: bool = True,
    limit: int | None = None,
    in_memory: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> DataBundle:
    """Load a dataset's train/val/test splits as uint8 tensors.

    Without a ``val`` split in the data, ``val_fraction`` of every training class is held
    out with ``seed`` (the same images on every run with that seed). ``limit`` caps the
    training images per class (after the validation split is cut). A folder whose decoded
    images would exceed :data:`MEMORY_BUDGET_BYTES` (or ``in_memory=False``) is streamed
    from disk by ``DataLoader`` workers at ``load_size`` (default 256) instead.
    """
    skipped: list[tuple[str, str]] = []
    splits: dict[str, Split]
    if source in CIFAR_NAMES:
        from resnetlab.data.cifar import load_cifar

        folder = Path(root).expanduser() if root else cache_root() / "data" / source
        splits = dict(load_cifar(source, folder, download=download))
        label = f"{source} (official distribution, {folder})"
    else:
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
            side = load_size or _probe_side(index)
            total = sum(len(v) for v in index.splits.values())
            stream = total * 3 * side * side > MEMORY_BUDGET_BYTES
        if stream and is_archive(path):
            raise DataError(
                f"{path} is too large to decode into memory; unpack it and train on the "
                "folder (it is then streamed from disk)"
            )
        if stream:
            splits = dict(_file_splits(index or index_folder(path), load_size or STREAM_SIZE))
            label += " (streamed from disk)"
        else:
            decoded, skipped = _load_folder(
                path,
                index=index,
                load_size=load_size,
                on_error=on_error,
                cache=cache,
                progress=progress,
            )
            splits = dict(decoded)
    train = splits.get("train", splits.get("all"))
    if train is None:
        raise DataError(f"{source}: no training split")
    if "val" in splits:
        val, val_note = splits["val"], "the data's own val/ split"
    else:
        train, val = stratified_split(train, val_fraction, seed=seed)
        val_note = f"{val_fraction:.0%} of train held out per class (seed {seed})"
    if limit is not None:
        train = limit_per_class(train, limit, seed=seed)
    if len(val) == 0:
        raise DataError(f"{source}: the validation split is empty (too few images per class)")
    mean, std = channel_stats(train.stats_images(seed=seed))
    return DataBundle(
        train=train,
        val=val,
        test=splits.get("test"),
        classes=train.classes,
        mean=mean,
        std=std,
        source=label,
        val_note=val_note,
        skipped=skipped,
    )


def train_batches(
    data: Split,
    pre: Preprocess,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    device: torch.device,
    start_batch: int = 0,
    generator_state: torch.Tensor | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Batches:
    """One epoch of augmented training batches, from memory or streamed from disk; with
    ``world_size`` > 1, rank ``rank``'s share of every global batch (see
    :func:`~resnetlab.data.loaders.shard_order`)."""
    return data.train_batches(
        pre,
        batch_size=batch_size,
        seed=seed,
        epoch=epoch,
        device=device,
        start_batch=start_batch,
        generator_state=generator_state,
        rank=rank,
        world_size=world_size,
    )


def eval_split_batches(
    data: Split, pre: Preprocess, *, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every image of a split once, in order, without augmentation."""
    return data.eval_batches(pre, batch_size=batch_size, device=device)


def on_device(bundle: DataBundle, device: torch.device) -> DataBundle:
    """Move the in-memory splits to ``device`` (streamed splits stay on disk), so batching
    and augmentation run there without host-to-device copies every step."""
    from dataclasses import replace

    def move(split: Split | None) -> Split | None:
        return None if split is None else split.to(device)

    train, val = move(bundle.train), move(bundle.val)
    assert train is not None
    assert val is not None
    return replace(bundle, train=train, val=val, test=move(bundle.test))
