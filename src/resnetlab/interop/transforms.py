"""The evaluation transform as data: one versioned block that says exactly how an image
becomes the model's input, and a callable that applies it to a PIL image.

It is what ``resnetlab predict`` does, written with PIL and numpy only, so another runtime
can repeat it to the last bit (docs/interop.md, "The preprocessing block"):

1. decode; convert to RGB (``channels`` 1: then to L): 16/32-bit and float images scaled
   to 0-255 by their bit depth first (white = 65,535 for 16-bit PNG), palette images
   through RGB(A), any alpha composited on white;
2. resize the **shorter** side to ``load_side`` with Pillow's ``interpolation`` filter
   (antialiased), the longer side ``int(load_side * long / short)`` (truncated, as
   torchvision's ``Resize``), unless the shorter side is ``load_side`` already;
3. cut the centre ``load_side``² square, offsets ``round((w - load_side) / 2)`` (Python's
   round: halves to even);
4. cut the centre ``crop``² of that, offset ``round((load_side - crop) / 2)``;
5. ``(x / 255 - mean) / std`` per channel in float32; layout ``(C, H, W)``.

A weights entry's :meth:`~resnetlab.interop.fact_sheet.PublishedWeights.transforms` gives
this callable, as torchvision's ``weights.transforms()`` does. Steps 1-3 are
:func:`resnetlab.data.images.to_rgb` and :func:`~resnetlab.data.images.centre_square`, the
functions that store every image resnetlab decodes: one code path, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from resnetlab.data.images import centre_square, resample_filter, to_rgb

__all__ = ["PREPROCESSING_VERSION", "EvalTransform", "centre_square", "to_rgb"]

# Bumped whenever a step above changes meaning; readers refuse a version they do not know.
PREPROCESSING_VERSION = 1


@dataclass(frozen=True)
class EvalTransform:
    """The evaluation preprocessing of one model (the steps in the module docstring)."""

    load_side: int  # the shorter side is resized to this, then the centre square is cut
    crop: int  # the model's input side (≤ load_side)
    interpolation: str  # "bilinear" | "bicubic" (Pillow's filters)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int = 3

    def __call__(self, image: Image.Image) -> Tensor:
        """A PIL image → float32 ``(channels, crop, crop)``, normalised."""
        im = to_rgb(image)
        if self.channels == 1:
            im = im.convert("L")
        im = centre_square(im, self.load_side, resample_filter(self.interpolation))
        arr = np.asarray(im, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        top = round((self.load_side - self.crop) / 2)
        arr = arr[top : top + self.crop, top : top + self.crop]
        scaled = arr.astype(np.float32) / np.float32(255.0)
        x = (scaled - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))

    def block(self, classes: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """The versioned preprocessing block every export carries (JSON-ready)."""
        return {
            "version": PREPROCESSING_VERSION,
            "channels": self.channels,
            "resize": {"side": "shorter", "size": self.load_side, "long_side": "truncate"},
            "convert": "RGB (16/32-bit and float: scaled to 0-255 by the bit depth; alpha: "
            + "on white)"
            + (", then L" if self.channels == 1 else ""),
            "interpolation": self.interpolation,
            "centre_square": "round-half-even offsets",
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "normalise": "(x / 255 - mean) / std, float32, (N, C, H, W)",
            "classes": list(classes),
        }

    @classmethod
    def from_block(cls, block: dict[str, Any]) -> EvalTransform:
        """The transform a block describes; an unknown version raises ``ValueError``."""
        if block.get("version") != PREPROCESSING_VERSION:
            raise ValueError(f"preprocessing block version {block.get('version')!r} is unknown")
        return cls(
            load_side=int(block["resize"]["size"]),
            crop=int(block["crop"]),
            interpolation=str(block["interpolation"]),
            mean=tuple(float(m) for m in block["mean"]),
            std=tuple(float(s) for s in block["std"]),
            channels=int(block["channels"]),
        )

    def __repr__(self) -> str:
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        return (
            f"EvalTransform(resize shorter side to {self.load_side} ({self.interpolation}), "
            f"centre crop {self.crop}, mean=({mean}), std=({std}))"
        )
