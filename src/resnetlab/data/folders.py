"""Image folders: ``root/<class>/<image>``, or ``root/{train,val,test}/<class>/<image>``,
on disk or inside a ``.tar`` / ``.tar.gz`` archive (read in place, nothing unpacked).

The shared CIFAR-10 rendition (``cifar10-jpeg.tar.gz``: ``train/`` and ``test/``) is one
such folder. Class names are the sorted folder names of the training split.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

import torch

from resnetlab.data.images import IMAGE_SUFFIXES, ImageError, decode_image, decode_square
from resnetlab.data.tensors import DataError, ImageTensors, Labelled, shuffled_per_class
from resnetlab.errors import InvalidValueError, first_line

L = TypeVar("L", bound=Labelled)

SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# An archive member declaring more bytes than this is skipped, not read: a 28 MB .tar.gz
# held a 6 GiB member, read whole into memory. (A 100-megapixel 16-bit TIFF is 600 MB; an
# image for training is a few MB at most.)
MAX_IMAGE_BYTES = 256 * 2**20


@dataclass
class LoadReport:
    """What loading skipped: ``(file, reason)`` for each unusable file."""

    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class FolderIndex:
    """The files of an image folder, by split: ``{split: [(relative path, class name)]}``."""

    source: Path
    splits: dict[str, list[tuple[str, str]]]
    classes: tuple[str, ...]
    # Files that look like images but are not read, with the reason: a format Pillow does
    # not decode (SVG, HEIC, …) or a symlink to nothing. Loading reports them as skipped.
    ignored: tuple[tuple[str, str], ...] = ()


# Image formats people keep beside their photos that are not decoded here: each is reported
# as skipped (they used to vanish without a word). Other files (.txt, .csv, .DS_Store) are
# not images and are passed over silently. (fmt: skip below: the suffixes packed, not one a line.)
UNSUPPORTED_SUFFIXES = frozenset(
    {".svg", ".svgz", ".heic", ".heif", ".avif", ".jxl", ".psd", ".eps", ".pdf",
     ".raw", ".dng", ".cr2", ".nef", ".arw"}
)  # fmt: skip


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def _tar_reason(err: BaseException, source: Path) -> str:
    """One line for a tarfile error. ``tarfile.open`` lists each compression it tried on a
    line of its own; the one the file's name promises says it best (.tar.gz: gzip's)."""
    text = str(err).strip()
    if "\n" not in text:
        return first_line(err)
    reasons = dict(re.findall(r"- method (\w+): \w+\('?(.*?)'?\)$", text, flags=re.M))
    name = source.name.lower()
    promised = ((("gz", "tgz"), "gz"), (("bz2",), "bz2"), (("xz",), "xz"))
    method = next((m for suffixes, m in promised if name.endswith(suffixes)), "tar")
    reason = reasons.get(method) or next(iter(reasons.values()), "")
    return f"not a readable tar archive ({reason})" if reason else first_line(err)


def walk_files(source: Path) -> Iterator[tuple[str, str]]:
    """``(dirpath, filename)`` of every file under ``source``, following symlinked folders
    (a class folder linked in from elsewhere is data; it used to be skipped without a word)
    but entering each real folder once, so a link loop ends."""
    seen: set[str] = set()
    for dirpath, dirs, files in os.walk(source, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for f in files:
            yield dirpath, f


def _list_files(source: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Relative POSIX paths of every image file under a folder or inside an archive, and
    the files passed over with a reason (see :attr:`FolderIndex.ignored`)."""
    dangling: list[str] = []
    if is_archive(source):
        try:
            with tarfile.open(source) as tar:
                # A name stored twice (`tar -r` appends an updated file) is one image: the
                # last copy, as extraction leaves it (_read_bytes keeps the last too);
                # counted per copy, the copies were split across train and val.
                names = list(dict.fromkeys(m.name for m in tar.getmembers() if m.isfile()))
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"cannot read archive {source}: {_tar_reason(err, source)}") from err
    elif source.is_dir():
        names = []
        for dirpath, f in walk_files(source):
            name = str(PurePosixPath(Path(dirpath, f).relative_to(source)))
            (names if os.path.exists(os.path.join(dirpath, f)) else dangling).append(name)
    else:
        raise DataError(f"no such folder or archive: {source}")
    ignored = [(n, "a symlink to a file that does not exist") for n in dangling]
    ignored += [
        (n, f"{PurePosixPath(n).suffix} images are not read (convert them to PNG or JPEG)")
        for n in names
        if PurePosixPath(n).suffix.lower() in UNSUPPORTED_SUFFIXES
    ]
    images = sorted(n for n in names if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES)
    return images, sorted(ignored)


def _strip_common_root(names: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    # An archive usually wraps everything in one folder (cifar10-jpeg/...): drop it.
    parts = [PurePosixPath(n).parts for n in names]
    while (
        parts
        and all(len(p) > 2 for p in parts)
        and len({p[0] for p in parts}) == 1
        and parts[0][0].lower() not in SPLIT_ALIASES  # train/ alone is a split, not a wrapper
    ):
        parts = [p[1:] for p in parts]
    return list(zip(names, parts, strict=True))


def index_folder(source: str | os.PathLike[str]) -> FolderIndex:
    """Find the splits and classes of an image folder or archive."""
    src = Path(source).expanduser()
    names, ignored = _list_files(src)
    if not names:
        raise DataError(f"no images found in {src} (expected <class>/<image> folders)")
    entries = _strip_common_root(names)
    splits: dict[str, list[tuple[str, str]]] = {}
    has_splits = all(len(p) == 3 and p[0].lower() in SPLIT_ALIASES for _, p in entries)
    for name, p in entries:
        if has_splits:
            split, cls = SPLIT_ALIASES[p[0].lower()], p[1]
        elif len(p) == 2:
            split, cls = "all", p[0]
        else:
            raise DataError(f"{src}: {name} is not in a <class>/<image> layout")
        splits.setdefault(split, []).append((name, cls))
    base = splits.get("train", splits.get("all"))
    if base is None:
        raise DataError(f"{src} has no train/ split (found: {', '.join(sorted(splits))})")
    classes = tuple(sorted({c for _, c in base}))
    if len(classes) < 2:
        raise DataError(f"{src}: need at least two classes, found {len(classes)}")
    for split, items in splits.items():
        unknown = sorted({c for _, c in items} - set(classes))
        if unknown:
            raise DataError(f"{src}: split {split!r} has classes not in train: {unknown[:3]}")
    return FolderIndex(src, splits, classes, tuple(ignored))


def _read_bytes(source: Path, names: list[str]) -> Iterator[tuple[str, bytes | None, str]]:
    """Yield ``(name, data, error)`` for each file, in ``names`` order (archives streamed)."""
    if is_archive(source):
        wanted = set(names)
        found: dict[str, bytes | int] = {}  # the bytes, or the size of a member too large
        try:
            with tarfile.open(source) as tar:
                for member in tar:  # sequential: a .tar.gz cannot seek cheaply
                    if member.name in wanted and member.size > MAX_IMAGE_BYTES:
                        found[member.name] = member.size  # its data is passed over unread
                    elif member.name in wanted:
                        f = tar.extractfile(member)
                        found[member.name] = f.read() if f is not None else b""
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"cannot read archive {source}: {_tar_reason(err, source)}") from err
        for n in names:
            data = found.get(n)
            if isinstance(data, bytes):
                yield n, data, ""
            elif data is None:
                yield n, None, "missing from archive"
            else:
                yield (
                    n,
                    None,
                    (
                        f"not read: {data / 2**20:,.0f} MiB, over the {MAX_IMAGE_BYTES // 2**20} "
                        "MiB an image file may have"
                    ),
                )
        return
    for n in names:
        try:
            yield n, (source / n).read_bytes(), ""
        except OSError as err:
            yield n, None, f"unreadable ({err.strerror or err})"


def load_split(
    index: FolderIndex,
    split: str,
    *,
    size: tuple[int, int] | None = None,
    crop: bool = False,
    interpolation: str = "bilinear",
    on_error: str = "skip",
    report: LoadReport | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImageTensors:
    """Decode every image of ``split`` into memory as uint8 ``(N, 3, H, W)``.

    ``size=(H, W)`` resizes every image (``crop=True`` with a square size: the shorter
    side to it and the centre square, so photos of any aspect keep their proportions, as
    streamed folders do); without it all images must share one size. ``interpolation``
    (``"bilinear"`` or ``"bicubic"``) is the resize filter.
    ``on_error="skip"`` reports unusable files in ``report`` and goes on;
    ``on_error="fail"`` raises :class:`DataError` naming the first one.
    """
    if on_error not in ("skip", "fail"):
        raise InvalidValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    items = index.splits.get(split)
    if not items:
        raise DataError(f"{index.source} has no {split!r} split")
    label_of = {c: i for i, c in enumerate(index.classes)}
    images, labels = [], []
    shape: tuple[int, ...] | None = None
    cls_of = dict(items)
    names = [n for n, _ in items]
    for done, (name, data, error) in enumerate(_read_bytes(index.source, names), 1):
        try:
            if data is None:
                raise ImageError(f"{name}: {error}")
            if crop and size is not None and size[0] == size[1]:
                img = decode_square(data, name, size[0], interpolation=interpolation)
            else:
                img = decode_image(data, name, size=size, interpolation=interpolation)
            if shape is None:
                shape = tuple(img.shape)
            elif tuple(img.shape) != shape:
                raise DataError(
                    f"{index.source}: images differ in size ({name} is "
                    f"{img.shape[1]}×{img.shape[2]}, others {shape[1]}×{shape[2]}); "
                    "set data.load_size=N to resize them"
                )
        except ImageError as err:
            if on_error == "fail":
                raise DataError(str(err)) from err
            if report is not None:
                report.skipped.append((name, str(err).removeprefix(f"{name}: ")))
            continue
        images.append(img)
        labels.append(label_of[cls_of[name]])
        if progress is not None:
            progress(done, len(names))
    if not images:
        raise DataError(f"{index.source}: no usable image in split {split!r}")
    return ImageTensors(torch.stack(images), torch.tensor(labels, dtype=torch.int64), index.classes)


def stratified_split(data: L, fraction: float, *, seed: int) -> tuple[L, L]:
    """Hold out ``fraction`` of every class (at least one image each) as a validation split,
    with a fixed ``seed``; the paper holds out 5,000 of CIFAR-10's 50,000 (``fraction=0.1``)."""
    if not 0.0 < fraction < 1.0:
        raise InvalidValueError(f"validation fraction must be in (0, 1), got {fraction}")
    keep, held = [], []
    for idx in shuffled_per_class(data, seed=seed):
        if len(idx) < 2:
            keep.append(idx)  # a class with one image cannot be split; it stays in train
            continue
        n_val = min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        held.append(idx[:n_val])
        keep.append(idx[n_val:])
    train_idx = torch.cat(keep).sort().values
    val_idx = torch.cat(held).sort().values if held else torch.empty(0, dtype=torch.int64)
    return data.subset(train_idx), data.subset(val_idx)
