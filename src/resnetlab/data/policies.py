"""TrivialAugment, RandAugment and AutoAugment as batched tensor ops.

The three policies of Müller & Hutter 2021 (TrivialAugment "wide": one op per image, a
uniformly drawn strength out of 31), Cubuk et al. 2020 (RandAugment: two ops per image at
strength 9 of 31) and Cubuk et al. 2019 (AutoAugment: one of 25 learnt two-op sub-policies,
CIFAR-10's or ImageNet's), with torchvision's op set and magnitude tables.

Written here rather than taken from a library: torchvision is not importable against this
torch build, and kornia (the candidate, 0.9.0) draws one op and one strength per call for
the whole batch, where these policies draw them per image as torchvision's do per PIL image;
it takes its draws from torch's global generator, not the epoch's; and image by image it
ran 26-27x slower than these (``benchmarks/augment.py``, batch 256 of 32x32 on a 2-core
Xeon: ours 28,600-50,900 uint8 images/s, kornia 1,100-1,900 per image, 20,000-62,000 on
the whole batch). Either way the loader outruns a 2-core ResNet-20 step (~1,400 images/s).
Each op works on a whole batch
(each image with its own strength), on uint8 or float images on the 0-255 scale, on
whatever device they live; every random draw comes from the caller's
``torch.Generator`` (on the CPU), so an epoch is the same whenever it runs and a resumed run
replays it. The output has the input's dtype, shape and range (uint8 results are rounded,
as PIL's are).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from resnetlab.errors import InvalidValueError

Policy = Literal["none", "trivialaugment", "randaugment", "autoaugment"]
POLICIES: tuple[str, ...] = ("trivialaugment", "randaugment", "autoaugment")

# The ops torchvision's TrivialAugmentWide and RandAugment draw from; AutoAugment adds invert.
OPS: tuple[str, ...] = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
    "invert",
)
DRAWN = len(OPS) - 1  # TrivialAugment and RandAugment choose among all but invert
SIGNED = frozenset(OPS[1:10])  # strength applied in a random direction

# AutoAugment's learnt sub-policies (Cubuk et al. 2019), as torchvision lists them: two
# (op, probability, magnitude bin of 10) each.
AA_CIFAR10: tuple[tuple[tuple[str, float, int], tuple[str, float, int]], ...] = (
    (("invert", 0.1, 0), ("contrast", 0.2, 6)),
    (("rotate", 0.7, 2), ("translate_x", 0.3, 9)),
    (("sharpness", 0.8, 1), ("sharpness", 0.9, 3)),
    (("shear_y", 0.5, 8), ("translate_y", 0.7, 9)),
    (("autocontrast", 0.5, 0), ("equalize", 0.9, 0)),
    (("shear_y", 0.2, 7), ("posterize", 0.3, 7)),
    (("color", 0.4, 3), ("brightness", 0.6, 7)),
    (("sharpness", 0.3, 9), ("brightness", 0.7, 9)),
    (("equalize", 0.6, 0), ("equalize", 0.5, 0)),
    (("contrast", 0.6, 7), ("sharpness", 0.6, 5)),
    (("color", 0.7, 7), ("translate_x", 0.5, 8)),
    (("equalize", 0.3, 0), ("autocontrast", 0.4, 0)),
    (("translate_y", 0.4, 3), ("sharpness", 0.2, 6)),
    (("brightness", 0.9, 6), ("color", 0.2, 8)),
    (("solarize", 0.5, 2), ("invert", 0.0, 0)),
    (("equalize", 0.2, 0), ("autocontrast", 0.6, 0)),
    (("equalize", 0.2, 0), ("equalize", 0.6, 0)),
    (("color", 0.9, 9), ("equalize", 0.6, 0)),
    (("autocontrast", 0.8, 0), ("solarize", 0.2, 8)),
    (("brightness", 0.1, 3), ("color", 0.7, 0)),
    (("solarize", 0.4, 5), ("autocontrast", 0.9, 0)),
    (("translate_y", 0.9, 9), ("translate_y", 0.7, 9)),
    (("autocontrast", 0.9, 0), ("solarize", 0.8, 3)),
    (("equalize", 0.8, 0), ("invert", 0.1, 0)),
    (("translate_y", 0.7, 9), ("autocontrast", 0.9, 0)),
)
AA_IMAGENET: tuple[tuple[tuple[str, float, int], tuple[str, float, int]], ...] = (
    (("posterize", 0.4, 8), ("rotate", 0.6, 9)),
    (("solarize", 0.6, 5), ("autocontrast", 0.6, 0)),
    (("equalize", 0.8, 0), ("equalize", 0.6, 0)),
    (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
    (("equalize", 0.4, 0), ("solarize", 0.2, 4)),
    (("equalize", 0.4, 0), ("rotate", 0.8, 8)),
    (("solarize", 0.6, 3), ("equalize", 0.6, 0)),
    (("posterize", 0.8, 5), ("equalize", 1.0, 0)),
    (("rotate", 0.2, 3), ("solarize", 0.6, 8)),
    (("equalize", 0.6, 0), ("posterize", 0.4, 6)),
    (("rotate", 0.8, 8), ("color", 0.4, 0)),
    (("rotate", 0.4, 9), ("equalize", 0.6, 0)),
    (("equalize", 0.0, 0), ("equalize", 0.8, 0)),
    (("invert", 0.6, 0), ("equalize", 1.0, 0)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("rotate", 0.8, 8), ("color", 1.0, 2)),
    (("color", 0.8, 8), ("solarize", 0.8, 7)),
    (("sharpness", 0.4, 7), ("invert", 0.6, 0)),
    (("shear_x", 0.6, 5), ("equalize", 1.0, 0)),
    (("color", 0.4, 0), ("equalize", 0.6, 0)),
    (("equalize", 0.4, 0), ("solarize", 0.2, 4)),
    (("solarize", 0.6, 5), ("autocontrast", 0.6, 0)),
    (("invert", 0.6, 0), ("equalize", 1.0, 0)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("equalize", 0.8, 0), ("equalize", 0.6, 0)),
)


def magnitudes(policy: str, bins: int, side: int) -> dict[str, Tensor]:
    """torchvision's strength of each op at each of ``bins`` bins, for images ``side``
    pixels wide: TrivialAugment's wide ranges, or RandAugment's and AutoAugment's."""
    wide = policy == "trivialaugment"
    top = (0.99, 32.0, 135.0, 0.99, 6) if wide else (0.3, 150 / 331 * side, 30.0, 0.9, 4)
    shear, translate, rotate, enhance, bits = top
    lin = torch.linspace
    poster = 8 - (torch.arange(bins) / ((bins - 1) / bits)).round()
    table = {
        "shear_x": lin(0, shear, bins),
        "shear_y": lin(0, shear, bins),
        "translate_x": lin(0, translate, bins),
        "translate_y": lin(0, translate, bins),
        "rotate": lin(0, rotate, bins),
        "posterize": poster,
        "solarize": lin(255.0, 0.0, bins),
    }
    for name in ("brightness", "color", "contrast", "sharpness"):
        table[name] = lin(0, enhance, bins)
    return table


# ---------------------------------------------------------------- the ops
def _warp(x: Tensor, matrix: Tensor) -> Tensor:
    """Sample every image at ``matrix @ (col, row, 1)`` (``(N, 2, 3)``, pixel coordinates of
    the output → of the input), nearest neighbour, black outside (torchvision's defaults)."""
    n, _, h, w = x.shape
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=x.dtype, device=x.device),
        torch.arange(w, dtype=x.dtype, device=x.device),
        indexing="ij",
    )
    points = torch.stack([cols, rows, torch.ones_like(cols)], dim=-1).view(1, h * w, 3)
    source = points @ matrix.to(x.device, x.dtype).transpose(1, 2)  # (N, H·W, 2)
    size = torch.tensor([w, h], dtype=x.dtype, device=x.device)
    grid = ((2 * source + 1) / size - 1).view(n, h, w, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _affine(x: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor, f: Tensor) -> Tensor:
    matrix = torch.stack([torch.stack([a, b, c], 1), torch.stack([d, e, f], 1)], 1)
    return _warp(x, matrix)


def shear_x(x: Tensor, m: Tensor) -> Tensor:
    """Shear along x by ``m`` (x' = x + m·y, about the top-left corner, as PIL)."""
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine(x, one, m, zero, zero, one, zero)


def shear_y(x: Tensor, m: Tensor) -> Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine(x, one, zero, zero, m, one, zero)


def translate_x(x: Tensor, m: Tensor) -> Tensor:
    """Move the content ``m`` pixels right (left when negative)."""
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine(x, one, zero, -m, zero, one, zero)


def translate_y(x: Tensor, m: Tensor) -> Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine(x, one, zero, zero, zero, one, -m)


def rotate(x: Tensor, m: Tensor) -> Tensor:
    """Rotate by ``m`` degrees about the image centre."""
    h, w = x.shape[-2:]
    t = torch.deg2rad(m)
    cos, sin = t.cos(), t.sin()
    cx, cy = (w - 1) / 2, (h - 1) / 2
    return _affine(x, cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """PIL's ImageEnhance: ``other + factor·(x - other)``, factor per image."""
    f = factor.to(x.device, x.dtype).view(-1, 1, 1, 1)
    return (other + f * (x - other)).clamp(0, 255)


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
    return (x * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def brightness(x: Tensor, m: Tensor) -> Tensor:
    return _blend(x, torch.zeros_like(x), 1 + m)


def color(x: Tensor, m: Tensor) -> Tensor:
    """Saturation: blend with the image's grey version."""
    return _blend(x, _gray(x).expand_as(x), 1 + m)


def contrast(x: Tensor, m: Tensor) -> Tensor:
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), 1 + m)


def sharpness(x: Tensor, m: Tensor) -> Tensor:
    """Blend with PIL's smoothing filter (3×3, centre weight 5 of 13); edge pixels kept."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13).expand(c, 1, 3, 3)
    blurred = x.clone()
    blurred[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c).round()
    return _blend(x, blurred, 1 + m)


def posterize(x: Tensor, m: Tensor) -> Tensor:
    """Keep the top ``m`` bits of every 8-bit value."""
    step = (2.0 ** (8 - m)).to(x.device, x.dtype).view(-1, 1, 1, 1)
    return (x / step).floor() * step


def solarize(x: Tensor, m: Tensor) -> Tensor:
    """Invert every value at or above the threshold ``m``."""
    return torch.where(x >= m.to(x.device, x.dtype).view(-1, 1, 1, 1), 255 - x, x)


def autocontrast(x: Tensor, _m: Tensor) -> Tensor:
    """Stretch every channel of every image to the full 0-255 range."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    scale = torch.where(hi > lo, 255 / (hi - lo).clamp_min(1e-6), torch.ones_like(hi))
    lo = torch.where(hi > lo, lo, torch.zeros_like(lo))
    return ((x - lo) * scale).clamp(0, 255)


def equalize(x: Tensor, _m: Tensor) -> Tensor:
    """Histogram equalisation of every channel of every image (PIL's lookup table,
    as torchvision computes it), one ``scatter_add`` for all histograms."""
    n, c, h, w = x.shape
    values = x.floor().clamp(0, 255).long().view(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, values, torch.ones_like(values))
    top = (hist > 0).long().mul(torch.arange(256, device=x.device)).amax(dim=1, keepdim=True)
    step = (h * w - hist.gather(1, top)) // 255  # (N·C, 1)
    lut = (hist.cumsum(1) + step // 2) // step.clamp_min(1)
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    out = torch.where(step > 0, lut.gather(1, values), values)
    return out.view(n, c, h, w).to(x.dtype)


def invert(x: Tensor, _m: Tensor) -> Tensor:
    return 255 - x


def identity(x: Tensor, _m: Tensor) -> Tensor:
    return x


OP_FUNCTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "identity": identity,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "translate_x": translate_x,
    "translate_y": translate_y,
    "rotate": rotate,
    "brightness": brightness,
    "color": color,
    "contrast": contrast,
    "sharpness": sharpness,
    "posterize": posterize,
    "solarize": solarize,
    "autocontrast": autocontrast,
    "equalize": equalize,
    "invert": invert,
}


def apply_ops(x: Tensor, ops: Tensor, strengths: Tensor) -> Tensor:
    """Image ``i`` of float ``x`` (0-255) transformed by ``OPS[ops[i]]`` at
    ``strengths[i]``: each op runs once, on the images that drew it."""
    out = x.clone()
    for k, name in enumerate(OPS):
        chosen = (ops == k).nonzero().squeeze(1)
        if name == "identity" or chosen.numel() == 0:
            continue
        index = chosen.to(x.device)
        out[index] = OP_FUNCTIONS[name](out[index], strengths[chosen])
    return out


# ---------------------------------------------------------------- the policies
def _signed(ops: Tensor, strengths: Tensor, generator: torch.Generator | None) -> Tensor:
    flip = torch.rand(len(ops), generator=generator) < 0.5
    signed = torch.tensor([name in SIGNED for name in OPS])[ops]
    return torch.where(flip & signed, -strengths, strengths)


def _strengths(table: dict[str, Tensor], ops: Tensor, bins: Tensor) -> Tensor:
    out = torch.zeros(len(ops))
    for k, name in enumerate(OPS):
        if name in table:
            hit = ops == k
            out[hit] = table[name][bins[hit]]
    return out


def draw(
    policy: str, n: int, side: int, generator: torch.Generator | None, *, cifar: bool = True
) -> list[tuple[Tensor, Tensor]]:
    """The ops and strengths of ``n`` images, one ``(ops, strengths)`` pair per round of the
    policy (TrivialAugment: 1, RandAugment and AutoAugment: 2). AutoAugment uses CIFAR-10's
    sub-policies when ``cifar``, else ImageNet's; an op its sub-policy's probability leaves
    out becomes the identity."""
    rounds = []
    if policy == "trivialaugment":
        table = magnitudes(policy, 31, side)
        ops = torch.randint(0, DRAWN, (n,), generator=generator)
        bins = torch.randint(0, 31, (n,), generator=generator)
        rounds.append((ops, _signed(ops, _strengths(table, ops, bins), generator)))
    elif policy == "randaugment":
        table = magnitudes(policy, 31, side)
        for _ in range(2):
            ops = torch.randint(0, DRAWN, (n,), generator=generator)
            bins = torch.full((n,), 9)
            rounds.append((ops, _signed(ops, _strengths(table, ops, bins), generator)))
    elif policy == "autoaugment":
        table = magnitudes(policy, 10, side)
        subs = AA_CIFAR10 if cifar else AA_IMAGENET
        pick = torch.randint(0, len(subs), (n,), generator=generator)
        for stage in range(2):
            spec = [sub[stage] for sub in subs]
            ops = torch.tensor([OPS.index(name) for name, _, _ in spec])[pick]
            p = torch.tensor([prob for _, prob, _ in spec])[pick]
            bins = torch.tensor([b for _, _, b in spec])[pick]
            ops = torch.where(torch.rand(n, generator=generator) < p, ops, torch.zeros_like(ops))
            rounds.append((ops, _signed(ops, _strengths(table, ops, bins), generator)))
    else:
        raise InvalidValueError(
            f"unknown augmentation policy {policy!r}; choose {', '.join(POLICIES)}"
        )
    return rounds


def augment_policy(
    x: Tensor, policy: str, generator: torch.Generator | None, *, cifar: bool = True
) -> Tensor:
    """``x`` (uint8, or float on the 0-255 scale; ``(N, C, H, W)``) with ``policy``
    applied to every image; the same dtype, shape and range. ``"none"``: ``x`` itself,
    drawing nothing from ``generator``."""
    if policy == "none" or x.shape[0] == 0:
        return x
    exact = x.dtype == torch.uint8
    out = x.float()
    for ops, strengths in draw(policy, x.shape[0], x.shape[-1], generator, cifar=cifar):
        out = apply_ops(out, ops, strengths)
        if exact:  # each op's output is an 8-bit image again, as with PIL
            out = out.round().clamp(0, 255)
    return out.to(torch.uint8) if exact else out.clamp(0, 255).to(x.dtype)


__all__ = ["OPS", "POLICIES", "Policy", "apply_ops", "augment_policy", "draw", "magnitudes"]
