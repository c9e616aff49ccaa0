"""CIFAR-10 and CIFAR-100 from the official distributions, read without trusting pickle.

Both official layouts are read from a root folder:

* python: ``cifar-10-batches-py/`` and ``cifar-100-python/`` (pickled dicts written by
  Python 2: loaded with ``encoding="bytes"`` through a restricted unpickler that can build
  numpy arrays and nothing else);
* binary: ``cifar-10-batches-bin/`` and ``cifar-100-binary/`` (fixed-size records).

In both, one image is 3072 bytes: the 1024 red values of the 32x32 image in row-major order,
then the 1024 green, then the 1024 blue; that is exactly a ``(3, 32, 32)`` uint8 tensor.

:func:`download_file` fetches the official archive (resumable, md5-checked, atomic) and
:func:`load_cifar` extracts it safely. (Writers of small files in both formats, for the
tests, are in ``tests/cifar_writers.py``.)
"""

from __future__ import annotations

import importlib
import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnetlab.data.tensors import DataError, ImageTensors
from resnetlab.download import Progress, download

__all__ = [
    "SOURCES",
    "CifarSource",
    "download_file",
    "load_cifar",
]

PIXELS = 3 * 32 * 32  # bytes per image: 1024 R, 1024 G, 1024 B, each plane row-major


@dataclass(frozen=True)
class CifarSource:
    """Where one dataset's official python-layout archive lives and what it unpacks to."""

    url: str
    md5: str
    archive: str  # file name of the archive saved under root
    python_dir: str  # folder inside the archive (python layout)
    binary_dir: str  # folder of the official binary layout (read if present, not downloaded)


# Module level so that tests (and mirrors) can swap in another address.
SOURCES: dict[str, CifarSource] = {
    "cifar10": CifarSource(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        archive="cifar-10-python.tar.gz",
        python_dir="cifar-10-batches-py",
        binary_dir="cifar-10-batches-bin",
    ),
    "cifar100": CifarSource(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        archive="cifar-100-python.tar.gz",
        python_dir="cifar-100-python",
        binary_dir="cifar-100-binary",
    ),
}

_C10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def _one_line(err: object) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _source(name: str) -> CifarSource:
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; choose one of {sorted(SOURCES)}")
    return SOURCES[name]


# ---------------------------------------------------------------------------------------------
# Restricted unpickling


def _numpy_reconstruct() -> Any:
    # numpy 2 moved numpy.core to numpy._core; importing the old name only warns.
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(mod)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise ImportError("numpy multiarray._reconstruct not found")  # pragma: no cover


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, "latin1"); any other codec
    # (zlib, base64, ...) has no business in a CIFAR file.
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise DataError(f"pickle asks for codec {encoding!r}; only latin1 is allowed")
    return text.encode("latin1", errors)


_RECONSTRUCT = _numpy_reconstruct()
# Everything a pickled uint8 array needs, under the names numpy 1 (and Python 2) and numpy 2 use.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds dicts, lists, bytes, numbers and plain numpy arrays; refuses every other global,
    so a crafted file cannot call ``os.system`` or import anything."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(f"pickle refers to {module}.{name}, which is not allowed") from None


def _load_pickle(path: Path) -> dict[bytes, Any]:
    """Unpickle an official CIFAR file (a dict with bytes keys); DataError names the file."""
    try:
        with path.open("rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path} not found (the folder {path.parent} is incomplete)") from None
    except DataError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    except Exception as err:  # a garbled pickle can raise almost anything
        raise DataError(f"cannot read {path}: not a valid CIFAR pickle ({_one_line(err)})") from err
    if not isinstance(obj, dict):
        raise DataError(f"cannot read {path}: expected a dict, got {type(obj).__name__}")
    return obj


def _field(d: dict[bytes, Any], key: bytes, path: Path) -> Any:
    if key not in d:
        raise DataError(f"cannot read {path}: no {key.decode()!r} entry")
    return d[key]


def _names(d: dict[bytes, Any], key: bytes, path: Path) -> tuple[str, ...]:
    raw = _field(d, key, path)
    try:
        return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw)
    except (TypeError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: bad {key.decode()!r} ({_one_line(err)})") from err


def _check_labels(labels: np.ndarray, n_classes: int, path: Path) -> None:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise DataError(f"cannot read {path}: a label is outside 0..{n_classes - 1}")


def _python_batch(path: Path, label_key: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(data uint8 (N, 3072), labels int64 (N,))`` of one pickled batch."""
    d = _load_pickle(path)
    data = _field(d, b"data", path)
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == PIXELS
    ):
        shape = getattr(data, "shape", None)
        raise DataError(f"cannot read {path}: 'data' must be uint8 (N, {PIXELS}), got {shape}")
    try:
        labels = np.asarray(_field(d, label_key, path), dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise DataError(f"cannot read {path}: bad labels ({_one_line(err)})") from err
    if labels.shape[0] != data.shape[0]:
        raise DataError(f"cannot read {path}: {data.shape[0]} images but {labels.size} labels")
    _check_labels(labels, n_classes, path)
    return data, labels


def _to_tensors(
    parts: list[tuple[np.ndarray, np.ndarray]], classes: tuple[str, ...]
) -> ImageTensors:
    # np.concatenate copies, so the tensor owns writable memory even for one batch.
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    images = torch.from_numpy(data).view(-1, 3, 32, 32)
    return ImageTensors(images, torch.from_numpy(labels), classes)


def _read_python(folder: Path, name: str, label_mode: str) -> dict[str, ImageTensors]:
    if name == "cifar10":
        meta = folder / "batches.meta"
        classes = _names(_load_pickle(meta), b"label_names", meta)
        train = [_python_batch(folder / f, b"labels", len(classes)) for f in _C10_TRAIN]
        test = [_python_batch(folder / "test_batch", b"labels", len(classes))]
    else:
        meta = folder / "meta"
        classes = _names(_load_pickle(meta), f"{label_mode}_label_names".encode(), meta)
        key = f"{label_mode}_labels".encode()
        train = [_python_batch(folder / "train", key, len(classes))]
        test = [_python_batch(folder / "test", key, len(classes))]
    return {"train": _to_tensors(train, classes), "test": _to_tensors(test, classes)}


# ---------------------------------------------------------------------------------------------
# Binary layout


def _read_names_txt(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path} not found (the folder {path.parent} is incomplete)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {_one_line(err)}") from err
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DataError(f"cannot read {path}: no class names in it")
    return names


def _binary_batch(
    path: Path, label_byte: int, n_labels: int, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Records of ``n_labels`` label bytes then 3072 pixel bytes; keeps label ``label_byte``."""
    record = n_labels + PIXELS
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path} not found (the folder {path.parent} is incomplete)") from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {_one_line(err)}") from err
    if raw.size == 0 or raw.size % record:
        raise DataError(
            f"cannot read {path}: {raw.size} bytes is not a whole number of "
            f"{record}-byte CIFAR records (truncated or not a CIFAR file?)"
        )
    rows = raw.reshape(-1, record)
    labels = rows[:, label_byte].astype(np.int64)
    _check_labels(labels, n_classes, path)
    return np.ascontiguousarray(rows[:, n_labels:]), labels


def _read_binary(folder: Path, name: str, label_mode: str) -> dict[str, ImageTensors]:
    if name == "cifar10":
        classes = _read_names_txt(folder / "batches.meta.txt")
        n = len(classes)
        train = [_binary_batch(folder / f"{f}.bin", 0, 1, n) for f in _C10_TRAIN]
        test = [_binary_batch(folder / "test_batch.bin", 0, 1, n)]
    else:
        classes = _read_names_txt(folder / f"{label_mode}_label_names.txt")
        at = 0 if label_mode == "coarse" else 1  # record: coarse byte, fine byte, pixels
        train = [_binary_batch(folder / "train.bin", at, 2, len(classes))]
        test = [_binary_batch(folder / "test.bin", at, 2, len(classes))]
    return {"train": _to_tensors(train, classes), "test": _to_tensors(test, classes)}


# ---------------------------------------------------------------------------------------------
# Download


def download_file(
    url: str, dest: Path, *, md5: str, timeout: float = 30, progress: Progress | None = None
) -> Path:
    """Download ``url`` to ``dest`` (resumable, md5-verified, atomic: see
    :func:`resnetlab.download.download`); return ``dest``. Raises :class:`DataError` (one
    line): after a network failure the ``.part`` is kept for the next try; after a checksum
    mismatch it is deleted."""
    return download(
        url,
        dest,
        algorithm="md5",
        digest=md5,
        error=DataError,
        resume=True,
        timeout=timeout,
        progress=progress,
    )


def _extract(archive: Path, root: Path, folder: str) -> None:
    """Unpack ``folder`` from ``archive`` into ``root``, all or nothing."""
    if not hasattr(tarfile, "data_filter"):  # Python < 3.11.4: no safe extraction filter
        raise DataError(f"cannot extract {archive} safely: needs Python 3.11.4 or newer")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.extract-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                # "data" refuses absolute paths, "..", links outside and device files.
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"cannot extract {archive}: {_one_line(err)}") from err
        if not (tmp / folder).is_dir():
            raise DataError(f"cannot extract {archive}: it has no {folder}/ folder")
        try:
            # A rename within one folder is atomic: readers see no folder or a complete one.
            os.replace(tmp / folder, root / folder)
        except OSError as err:
            raise DataError(f"cannot move {folder} into {root}: {_one_line(err)}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Public loader


def load_cifar(
    name: str,
    root: str | os.PathLike[str],
    *,
    download: bool = False,
    label_mode: str = "fine",
    progress: Progress | None = None,
) -> dict[str, ImageTensors]:
    """``{"train": ..., "test": ...}`` of CIFAR-10 (``"cifar10"``) or CIFAR-100 (``"cifar100"``).

    Images are uint8 ``(N, 3, 32, 32)`` (RGB), labels int64 ``(N,)``. Reads the official python
    layout under ``root`` if present, else the official binary layout. ``label_mode`` is
    ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses), CIFAR-100 only. With
    ``download=True`` a missing dataset is fetched (python layout) from ``SOURCES[name]``;
    ``progress(bytes_done, bytes_total)`` reports the download.
    """
    src = _source(name)
    if label_mode not in ("fine", "coarse"):
        raise DataError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    if label_mode == "coarse" and name != "cifar100":
        raise DataError(f"label_mode='coarse' exists only for cifar100, not {name}")
    root = Path(root)
    if (root / src.python_dir).is_dir():
        return _read_python(root / src.python_dir, name, label_mode)
    if (root / src.binary_dir).is_dir():
        return _read_binary(root / src.binary_dir, name, label_mode)
    if not download:
        raise DataError(
            f"{name} not found under {root} (looked for {src.python_dir}/ and "
            f"{src.binary_dir}/); use --download (download=True; needs internet) or put the "
            f"official archive's folder there ({src.url})"
        )
    root.mkdir(parents=True, exist_ok=True)
    archive = download_file(src.url, root / src.archive, md5=src.md5, progress=progress)
    _extract(archive, root, src.python_dir)
    return _read_python(root / src.python_dir, name, label_mode)
