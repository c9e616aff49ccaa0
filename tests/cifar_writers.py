"""Writers of small CIFAR files in the exact official formats, for the tests of the readers
(:mod:`resnetlab.data.cifar`): the python layout (pickled dicts, protocol 2, bytes keys) and
the binary layout (fixed-size records), for CIFAR-10 and CIFAR-100."""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnetlab.data.cifar import PIXELS, SOURCES
from resnetlab.data.tensors import DataError, ImageTensors

_C10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def _check_cifar(data: ImageTensors, what: str, files: int) -> np.ndarray:
    """``(N, 3072)`` uint8 rows: (3, 32, 32) flattened is already R plane, G plane, B plane."""
    if data.image_size != (3, 32, 32):
        raise DataError(f"{what} images must be (N, 3, 32, 32), got {tuple(data.images.shape)}")
    # The reader takes an empty file for a truncated one, so every file gets an image.
    if len(data) < files:
        raise DataError(f"{what} needs at least {files} image(s), one per file; got {len(data)}")
    return data.images.reshape(-1, PIXELS).contiguous().numpy()


def _coarse_map(
    classes: tuple[str, ...],
    coarse_of_fine: Sequence[int] | None,
    coarse_classes: Sequence[str] | None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    n = len(classes)
    k = min(20, n)
    mapping = np.asarray(
        [i * k // n for i in range(n)] if coarse_of_fine is None else list(coarse_of_fine),
        dtype=np.int64,
    )
    names = (
        tuple(coarse_classes)
        if coarse_classes is not None
        else tuple(f"superclass_{j}" for j in range(int(mapping.max()) + 1 if n else 0))
    )
    if mapping.shape != (n,) or (n and (mapping.min() < 0 or mapping.max() >= len(names))):
        raise DataError("coarse_of_fine needs one index into coarse_classes per fine class")
    return mapping, names


def _split(rows: np.ndarray, labels: np.ndarray, parts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(zip(np.array_split(rows, parts), np.array_split(labels, parts), strict=True))


def _dump(path: Path, obj: dict[bytes, Any]) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)  # as the official files: protocol 2, bytes keys


def _write_python_cifar10(
    folder: Path,
    train: ImageTensors,
    test: ImageTensors,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
) -> None:
    """``batches.meta``, ``data_batch_1``..``5`` (train split in 5) and ``test_batch``."""
    _dump(
        folder / "batches.meta",
        {
            b"label_names": [c.encode() for c in train.classes],
            b"num_cases_per_batch": 10000,
            b"num_vis": PIXELS,
        },
    )
    batches = [
        (f, r, lab, f"training batch {i + 1} of 5")
        for i, (f, (r, lab)) in enumerate(
            zip(_C10_TRAIN, _split(train_rows, train.labels.numpy(), 5), strict=True)
        )
    ]
    batches.append(("test_batch", test_rows, test.labels.numpy(), "testing batch 1 of 1"))
    for fname, rows, labels, kind in batches:
        _dump(
            folder / fname,
            {
                b"batch_label": kind.encode(),
                b"labels": [int(v) for v in labels],
                b"data": rows,
                b"filenames": [f"image_{j:05d}.png".encode() for j in range(len(labels))],
            },
        )


def write_cifar_python(
    root: str | os.PathLike[str],
    name: str,
    train: ImageTensors,
    test: ImageTensors,
    *,
    coarse_of_fine: Sequence[int] | None = None,
    coarse_classes: Sequence[str] | None = None,
) -> Path:
    """Write ``train``/``test`` as the official python layout under ``root``; return the folder.

    CIFAR-10: ``data_batch_1``..``5`` (train split in 5), ``test_batch``, ``batches.meta``.
    CIFAR-100: ``train``, ``test``, ``meta``; ``train.classes`` are the fine classes and the
    coarse label of an image is ``coarse_of_fine[fine_label]`` (default: fine classes split
    into ``min(20, n)`` consecutive groups named ``superclass_J``).
    """
    src = SOURCES[name]
    folder = Path(root) / src.python_dir
    folder.mkdir(parents=True, exist_ok=True)
    splits = {
        "train": (train, _check_cifar(train, "train", 5 if name == "cifar10" else 1)),
        "test": (test, _check_cifar(test, "test", 1)),
    }
    if name == "cifar10":
        _write_python_cifar10(folder, train, test, splits["train"][1], splits["test"][1])
        return folder
    mapping, coarse_names = _coarse_map(train.classes, coarse_of_fine, coarse_classes)
    _dump(
        folder / "meta",
        {
            b"fine_label_names": [c.encode() for c in train.classes],
            b"coarse_label_names": [c.encode() for c in coarse_names],
        },
    )
    for split, (data, rows) in splits.items():
        fine = data.labels.numpy()
        _dump(
            folder / split,
            {
                b"filenames": [f"image_{j:05d}.png".encode() for j in range(len(fine))],
                b"batch_label": f"{split}ing batch 1 of 1".encode(),
                b"fine_labels": [int(v) for v in fine],
                b"coarse_labels": [int(v) for v in mapping[fine]],
                b"data": rows,
            },
        )
    return folder


def write_cifar_binary(
    root: str | os.PathLike[str],
    name: str,
    train: ImageTensors,
    test: ImageTensors,
    *,
    coarse_of_fine: Sequence[int] | None = None,
    coarse_classes: Sequence[str] | None = None,
) -> Path:
    """Write ``train``/``test`` as the official binary layout under ``root``; return the folder.

    CIFAR-10: records of 1 label byte + 3072 pixel bytes in ``data_batch_1.bin``..``5``,
    ``test_batch.bin``, names in ``batches.meta.txt``. CIFAR-100: records of coarse byte +
    fine byte + 3072 pixel bytes in ``train.bin``/``test.bin``, names in
    ``fine_label_names.txt``/``coarse_label_names.txt``. Coarse labels as in
    :func:`write_cifar_python`. Labels must fit a byte (< 256).
    """
    src = SOURCES[name]
    folder = Path(root) / src.binary_dir
    folder.mkdir(parents=True, exist_ok=True)

    def records(rows: np.ndarray, *label_cols: np.ndarray) -> bytes:
        if any(c.size and c.max() > 255 for c in label_cols):
            raise DataError("binary CIFAR labels must be < 256")
        cols = [c.astype(np.uint8).reshape(-1, 1) for c in label_cols]
        return np.concatenate([*cols, rows], axis=1).tobytes()

    tr_rows = _check_cifar(train, "train", 5 if name == "cifar10" else 1)
    te_rows = _check_cifar(test, "test", 1)
    tr_lab, te_lab = train.labels.numpy(), test.labels.numpy()
    if name == "cifar10":
        (folder / "batches.meta.txt").write_text(
            "\n".join(train.classes) + "\n\n", encoding="utf-8"
        )
        for fname, (rows, labels) in zip(_C10_TRAIN, _split(tr_rows, tr_lab, 5), strict=True):
            (folder / f"{fname}.bin").write_bytes(records(rows, labels))
        (folder / "test_batch.bin").write_bytes(records(te_rows, te_lab))
        return folder
    mapping, coarse_names = _coarse_map(train.classes, coarse_of_fine, coarse_classes)
    (folder / "fine_label_names.txt").write_text("\n".join(train.classes) + "\n", encoding="utf-8")
    (folder / "coarse_label_names.txt").write_text("\n".join(coarse_names) + "\n", encoding="utf-8")
    (folder / "train.bin").write_bytes(records(tr_rows, mapping[tr_lab], tr_lab))
    (folder / "test.bin").write_bytes(records(te_rows, mapping[te_lab], te_lab))
    return folder
