"""Decoding one image file safely with Pillow.

Every mode Pillow reads is converted to 8-bit RGB (or L for ``channels=1``): grayscale,
palette (with or without transparency), RGBA/LA (composited on white), 16- and 32-bit
integer, float, CMYK. A file that is not an image, is truncated, or is a decompression bomb
raises :class:`ImageError` naming the file.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from resnetlab.errors import InvalidValueError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
# Refuse anything over 64 megapixels before decoding it: a small file can claim a huge
# canvas ("decompression bomb"); CIFAR images have 1,024 pixels, photos ~10-50 M.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageError(InvalidValueError):
    """An image that cannot be used (corrupt, not an image, too large)."""


def _to_rgb(image: Image.Image) -> Image.Image:
    im = image
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # High bit depth: scale the actual range to 0-255 instead of clipping at 255.
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        im = Image.fromarray(((arr - lo) * scale).round().astype(np.uint8), mode="L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im.convert("RGB")


def decode_image(
    data: bytes,
    name: str,
    *,
    size: tuple[int, int] | None = None,
    channels: int = 3,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Tensor:
    """Decode ``data`` into a uint8 tensor ``(channels, H, W)``.

    ``size=(H, W)`` resizes (bilinear, with Pillow's antialiasing) after conversion.
    Raises :class:`ImageError` with the file's ``name`` for anything unusable.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.width * im.height > max_pixels:
                raise ImageError(
                    f"{name}: {im.width}×{im.height} pixels is over the {max_pixels:,} limit "
                    "(possible decompression bomb); refused"
                )
            im.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{name}: refused as a decompression bomb ({err})") from err
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{name}: corrupt image ({err})") from err
    rgb = _to_rgb(im)
    if channels == 1:
        rgb = rgb.convert("L")
    if size is not None and (rgb.height, rgb.width) != size:
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
