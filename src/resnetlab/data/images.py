"""Decoding one image file safely with Pillow.

Every mode Pillow reads is converted to 8-bit RGB (or L for ``channels=1``): grayscale,
palette (with or without transparency), RGBA/LA (composited on white), 16- and 32-bit
integer, float, CMYK. A file that is not an image, is truncated, or is a decompression bomb
raises :class:`ImageError` naming the file.
"""

from __future__ import annotations

import io
import warnings
from typing import Literal, get_args

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

# The resampling filter of every resize (Pillow's, antialiased when shrinking, as
# torchvision's PIL path): torchvision's weights were evaluated with bilinear, timm's
# mostly with bicubic; a mismatch costs a published model a few tenths of a point.
Interpolation = Literal["bilinear", "bicubic"]
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)


def resample_filter(interpolation: str) -> Image.Resampling:
    """Pillow's filter for ``"bilinear"`` or ``"bicubic"``."""
    if interpolation not in INTERPOLATIONS:
        raise InvalidValueError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}"
        )
    return Image.Resampling.BICUBIC if interpolation == "bicubic" else Image.Resampling.BILINEAR


class ImageError(InvalidValueError):
    """An image that cannot be used (corrupt, not an image, too large)."""


def _full_scale(im: Image.Image) -> float:
    """The value of white in a high-bit-depth grey image: ``2**bits - 1`` by the file's
    bit depth (16 for PNG and PGM, a TIFF's BitsPerSample), 1.0 for a float image whose
    values lie in [0, 1] (else 255)."""
    if im.mode == "F":
        return 1.0 if float(np.asarray(im).max(initial=0.0)) <= 1.0 else 255.0
    bits = 16
    tags = getattr(im, "tag_v2", None)
    if im.mode == "I" and tags is not None:  # a TIFF of 8 to 32 bits per sample
        per_sample = tags.get(258, (32,))
        bits = int(per_sample[0] if isinstance(per_sample, tuple) else per_sample)
    return float(2**bits - 1)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode Pillow reads → 8-bit RGB (16/32-bit and float grey scaled by the bit depth,
    palette through RGB(A), alpha composited on white). The one conversion of every image
    resnetlab reads: decoding here and a weights entry's ``transforms()`` both call it."""
    im = image
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # High bit depth: scaled by the bit depth, the same for every image, so a picture
        # saved as 8-bit and as 16-bit decodes alike (a per-image min-max stretch made a
        # uniform 16-bit image black and changed contrast image by image).
        arr = np.asarray(im, dtype=np.float64) * (255.0 / _full_scale(im))
        im = Image.fromarray(arr.round().clip(0, 255).astype(np.uint8), mode="L")
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
    square: int | None = None,
    channels: int = 3,
    interpolation: str = "bilinear",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Tensor:
    """Decode ``data`` into a uint8 tensor ``(channels, H, W)``.

    ``size=(H, W)`` resizes to exactly that after conversion; ``square=S`` instead resizes
    the shorter side to S, keeping the aspect (the longer side truncated, as torchvision's
    ``Resize(S)``), and cuts the centre S×S (its ``CenterCrop``). Either resize uses the
    ``interpolation`` filter with Pillow's antialiasing. Raises :class:`ImageError` with the
    file's ``name`` for anything unusable.
    """
    resample = resample_filter(interpolation)
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
    rgb = to_rgb(im)
    if channels == 1:
        rgb = rgb.convert("L")
    if square is not None:
        rgb = centre_square(rgb, square, resample)
    elif size is not None and (rgb.height, rgb.width) != size:
        rgb = rgb.resize((size[1], size[0]), resample)
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def decode_square(
    data: bytes, name: str, size: int, *, interpolation: str = "bilinear", channels: int = 3
) -> Tensor:
    """Decode, resize the shorter side to ``size`` and cut the centre ``size``×``size``."""
    return decode_image(data, name, square=size, channels=channels, interpolation=interpolation)


def centre_square(im: Image.Image, side: int, resample: Image.Resampling) -> Image.Image:
    """The shorter side resized to ``side`` (the longer ``int(side * long / short)``,
    truncated, as torchvision's ``Resize``; no resize where it is ``side`` already), then the
    centre ``side``×``side`` square, offsets ``round((w - side) / 2)`` (halves to even).
    The one resize-and-crop of stored images and of a weights entry's ``transforms()``
    (:mod:`resnetlab.interop.transforms`): predict and the portable export block rely on
    the two agreeing exactly."""
    w, h = im.size
    if min(w, h) != side:
        if w <= h:
            w, h = side, int(side * h / w)
        else:
            w, h = int(side * w / h), side
        im = im.resize((w, h), resample)
    left, top = round((w - side) / 2), round((h - side) / 2)
    return im.crop((left, top, left + side, top + side))
