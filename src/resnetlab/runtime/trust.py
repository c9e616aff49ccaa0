"""The numbers a checkpoint carries, checked before they are used: the file is not ours to
trust. A NaN weight or a zero standard deviation made every prediction NaN ("ship nan%",
a top-1 of 10%, exit 0); a class list, channel count or input size that does not fit the
weights made an internal error or a 10.8 GB allocation. Each is one line instead."""

from __future__ import annotations

import math
import os
from typing import Any

from torch import Tensor

from resnetlab.errors import CheckpointError

MAX_SIDE = 4096  # pixels: the largest input side a checkpoint may ask for
MAX_CHANNELS = 4  # grey, RGB (and RGBA-sized inputs of the compat loaders)


def check_numbers(
    path: str | os.PathLike[str],
    *,
    weights: dict[str, Any],
    classes: tuple[Any, ...],
    mean: tuple[Any, ...],
    std: tuple[Any, ...],
    image_size: Any,
    data_size: tuple[int, int, int],
) -> None:
    """Raise :class:`CheckpointError` (one line naming ``path``) unless the checkpoint's
    preprocessing, sizes, classes and weights are usable numbers."""

    def refuse(what: str) -> CheckpointError:
        return CheckpointError(f"cannot use checkpoint {path}: {what}")

    c, h, w = data_size
    if not 1 <= c <= MAX_CHANNELS or not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise refuse(f"its images are {c}×{h}×{w} (channels 1–{MAX_CHANNELS}, sides 1–{MAX_SIDE})")
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise refuse(f"its input size {image_size!r} is not a whole number")
    if not 1 <= image_size <= MAX_SIDE:
        raise refuse(f"its input size {image_size} is outside 1–{MAX_SIDE} pixels")
    if not classes or not all(isinstance(k, str) for k in classes):
        raise refuse("its class list is empty or not a list of names")
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != c:
            raise refuse(f"its preprocessing {name} has {len(values)} values for {c} channels")
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise refuse(f"its preprocessing {name} {list(values)} is not finite numbers")
    if not all(v > 0 for v in std):
        raise refuse(f"its preprocessing std {list(std)} has a zero or negative value")
    bad = next(
        (k for k, t in weights.items() if isinstance(t, Tensor) and t.is_floating_point()
         and not bool(t.isfinite().all())),
        None,
    )  # fmt: skip
    if bad is not None:
        raise refuse(f"weight {bad} holds NaN or infinite values")
