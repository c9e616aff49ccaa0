"""The decoded cache: a folder or archive of images decoded once into uint8 tensors and kept
under ``~/.cache/resnetlab/decoded/``, keyed by the source's path, the SHA-256 of its
contents and the decoding settings (:func:`load_folder`). An entry is verified before it is
trusted (each split file's size, SHA-256 and image count, against a manifest written last)
and written as a whole (a temporary folder renamed into place), so a run cut short leaves
nothing a later run would misread.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from resnetlab.data.folders import FolderIndex, LoadReport, index_folder, load_split, walk_files
from resnetlab.data.tensors import DataError, ImageTensors
from resnetlab.fileio import cache_root


def _fingerprint(path: Path, extra: str) -> str:
    """The cache key: the source's path, the decoding settings and the SHA-256 of every
    byte it holds (each file's, by name, for a folder; the archive's for a ``.tar``). Not
    sizes and modification times: ``cp -p`` or ``rsync -a`` change pixels and keep both,
    and the stale cache was used without a word. Hashing reads each file once, several
    times faster than decoding it (docs/bad-input.md gives the numbers)."""
    h = hashlib.sha256(f"{path.resolve()}|{extra}".encode())
    if path.is_dir():
        for dirpath, f in sorted(walk_files(path)):  # as indexed: linked folders too
            file = os.path.join(dirpath, f)
            digest = _sha256(Path(file)) if os.path.isfile(file) else "dangling"
            h.update(f"{dirpath}/{f}|{digest}".encode())
    else:
        h.update(_sha256(path).encode())
    return h.hexdigest()[:20]


# The decoded cache's layout and meaning; an entry written by another version is rebuilt.
# 4: resized photos keep torchvision's arithmetic (longer side truncated, centre margin
# rounded) and the key names the resize filter.
CACHE_VERSION = 4
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


def load_folder(
    path: Path,
    *,
    index: FolderIndex | None,
    load_size: int | None,
    on_error: str,
    cache: bool,
    progress: Callable[[str], None] | None,
    interpolation: str = "bilinear",
    subset: str = "",
) -> tuple[dict[str, ImageTensors], list[tuple[str, str]]]:
    """Every split of the folder or archive ``path`` decoded (at ``load_size``, if given,
    resized with ``interpolation``), from the cache where it holds a verified entry, and the
    files skipped. ``subset``: names the part of the folder ``index`` holds (part of the
    key; empty: the whole folder)."""
    resize = f"{load_size}/{interpolation}" if load_size else "None"
    key = _fingerprint(
        path, f"{resize}|{on_error}|v{CACHE_VERSION}" + (f"|{subset}" if subset else "")
    )
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
            index,
            split,
            size=size,
            crop=True,
            interpolation=interpolation,
            on_error=on_error,
            report=report,
        )
    if cache:  # a read-only or full cache folder only costs the next run its decoding time
        _write_cache(cached, splits, report.skipped)
    return splits, report.skipped
