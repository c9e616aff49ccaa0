"""Augmentation and preprocessing as batched tensor ops on ``(N, C, H, W)`` batches.

One call transforms a whole batch on whatever device it lives on, with an explicit
``torch.Generator`` so a run is repeatable and resumable. Inputs are uint8 (0-255);
outputs are normalised float32. On top of the geometric base (``cifar`` or ``imagenet``)
come, in torchvision's order, an automatic policy (:mod:`resnetlab.data.policies`),
normalisation, random erasing, and mixup/CutMix (which also turns the labels into class
probabilities: :func:`train_batch`). Each draws from the generator only when it is on, so
a recipe without them sees exactly the batches it saw before they existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from resnetlab.data.policies import POLICIES, Policy, augment_policy

Augment = Literal["cifar", "imagenet", "none"]


@dataclass(frozen=True)
class Preprocess:
    """Everything needed to turn stored uint8 images into model inputs; saved in every
    checkpoint so evaluation and prediction use exactly the training preprocessing.

    ``mean``/``std`` are the training set's own per-channel statistics (0-1 scale).
    ``image_size`` is the model's input side; ``resize_from`` > 0 means images are first
    resized to that side (the finetune recipe trains on CIFAR's 32×32 images at 128×128).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    augment: Augment = "cifar"
    padding: int = 4  # pixels of zero padding for the CIFAR random crop (paper §4.2)
    scale: tuple[float, float] = (0.08, 1.0)  # random-resized-crop area range (ImageNet)
    # Evaluation (ImageNet-style): the centre crop's share of the resized side; 0.875 is
    # 224 of 256 (torchvision's V1 weights), 224/232 its V2 weights'.
    crop_pct: float = 0.875

    policy: Policy = "none"  # trivialaugment | randaugment | autoaugment after the base crop
    random_erasing: float = 0.0  # probability per image (Zhong et al. 2017)
    mixup_alpha: float = 0.0  # Beta(α, α) of mixup (Zhang et al. 2018); 0: off
    cutmix_alpha: float = 0.0  # Beta(α, α) of CutMix (Yun et al. 2019); 0: off
    mix_switch_prob: float = 0.5  # with both on: probability that a batch uses CutMix

    @property
    def resize_side(self) -> int:
        """The side an image is resized to before the evaluation centre crop."""
        return round(self.image_size / self.crop_pct)


def policy_base(stored_side: int, image_size: int) -> Augment:
    """The geometric augmentation an automatic policy (``data.augment: trivialaugment`` …)
    goes with: the random-resized crop when the stored images are larger than the model's
    input (photo folders, stored at 256 for 224), else CIFAR's pad-and-crop (32 → 32, or
    upsampled afterwards as the finetune recipe does)."""
    return "imagenet" if stored_side > image_size else "cifar"


def split_augment(augment: str, stored_side: int, image_size: int) -> tuple[Augment, Policy]:
    """``data.augment`` as (geometric base, policy): ``"trivialaugment"`` → e.g.
    ``("cifar", "trivialaugment")``; ``"cifar"`` → ``("cifar", "none")``."""
    if augment in POLICIES:
        return policy_base(stored_side, image_size), augment  # type: ignore[return-value]
    return augment, "none"  # type: ignore[return-value]


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None) -> Tensor:
    """Pad every image by ``padding`` zeros and cut a random crop of the original size
    (He et al. 2015 §4.2: "4 pixels are padded on each side, and a 32×32 crop is randomly
    sampled from the padded image or its horizontal flip")."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Mirror a random half of the batch left-right."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_resized_crop(
    x: Tensor,
    size: int,
    generator: torch.Generator | None,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Tensor:
    """Inception-style crop (area fraction in ``scale``, aspect ratio in ``ratio``, log-
    uniform), resized to ``size``×``size`` with bilinear sampling, per image, in one
    ``grid_sample`` call. Input float ``(N, C, H, W)``."""
    n = x.shape[0]
    area = torch.empty(n).uniform_(*scale, generator=generator)
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = log_r.exp()
    # Crop width and height as fractions of the image side (clamped to fit).
    fw = (area * aspect).sqrt().clamp(max=1.0)
    fh = (area / aspect).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * (1 - fw) + fw / 2) * 2 - 1
    cy = (torch.rand(n, generator=generator) * (1 - fh) + fh / 2) * 2 - 1
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = fw, cx
    theta[:, 1, 1], theta[:, 1, 2] = fh, cy
    grid = F.affine_grid(
        theta.to(x.device, x.dtype), [n, x.shape[1], size, size], align_corners=False
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def resize(x: Tensor, size: int) -> Tensor:
    """Resize float images to ``size``×``size`` (bilinear, antialiased when shrinking)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 0-255 (or float 0-255) → float32 ``(x/255 - mean) / std``."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s


def random_erasing(x: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    """Zhong et al. 2017 as torchvision's ``RandomErasing`` defaults: with probability ``p``
    per image, one box of 2-33% of the area, aspect ratio 0.3-3.3 (log-uniform), set to 0
    (the mean, after normalisation). Unlike torchvision, which retries up to ten draws and
    then gives up, a box too tall or wide is clipped to the image. Float ``(N, C, H, W)``."""
    if p <= 0:
        return x
    n, _, h, w = x.shape
    apply = torch.rand(n, generator=generator) < p
    area = torch.empty(n).uniform_(0.02, 0.33, generator=generator) * h * w
    ratio = torch.empty(n).uniform_(math.log(0.3), math.log(3.3), generator=generator).exp()
    bh = (area * ratio).sqrt().round().clamp(1, h)
    bw = (area / ratio).sqrt().round().clamp(1, w)
    top = (torch.rand(n, generator=generator) * (h - bh + 1)).floor()
    left = (torch.rand(n, generator=generator) * (w - bw + 1)).floor()
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return x.masked_fill(mask[:, None].to(x.device), 0.0)


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    """One Beta(α, α) draw, reproducible from ``generator`` (torch's Beta sampler takes no
    generator: numpy's, seeded from it, does the sampling)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def cutmix_box(
    h: int, w: int, lam: float, generator: torch.Generator | None
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a box of area ≈ (1 - λ)·h·w, of the image's aspect
    ratio, placed uniformly where it fits whole. (Yun et al. and timm centre it anywhere and
    clip it at the border, which shrinks it; a box that always fits has the area drawn.)"""
    cut = math.sqrt(1.0 - lam)
    bh, bw = round(h * cut), round(w * cut)
    top = int(torch.randint(0, h - bh + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - bw + 1, (1,), generator=generator))
    return top, left, bh, bw


def mix_batch(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    pre: Preprocess,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) of a batch with its own
    reverse (timm's "batch" mode: one λ per batch, no second gather of images).

    Returns the mixed images and the class probabilities ``(N, num_classes)``: λ of the
    image's own label and 1 - λ of its partner's (for CutMix, λ is the exact share of
    pixels kept), so every row sums to one. Label smoothing, applied by the loss on top,
    composes with it. With both α > 0, a batch uses CutMix with ``pre.mix_switch_prob``.
    With neither, ``(x, y)`` unchanged."""
    if pre.mixup_alpha <= 0 and pre.cutmix_alpha <= 0:
        return x, y
    cutmix = pre.cutmix_alpha > 0 and (
        pre.mixup_alpha <= 0 or float(torch.rand(1, generator=generator)) < pre.mix_switch_prob
    )
    lam = _beta(pre.cutmix_alpha if cutmix else pre.mixup_alpha, generator)
    target = F.one_hot(y, num_classes).to(torch.float32)
    if cutmix:
        h, w = x.shape[-2:]
        top, left, bh, bw = cutmix_box(h, w, lam, generator)
        x = x.clone()
        x[..., top : top + bh, left : left + bw] = x.flip(0)[..., top : top + bh, left : left + bw]
        lam = 1.0 - bh * bw / (h * w)
    else:
        x = lam * x + (1.0 - lam) * x.flip(0)
    return x, lam * target + (1.0 - lam) * target.flip(0)


def train_transform(x: Tensor, pre: Preprocess, generator: torch.Generator | None) -> Tensor:
    """uint8 batch → augmented, normalised float batch for training."""
    if pre.augment == "cifar":
        x = random_flip(random_crop(x, pre.padding, generator), generator)
        x = augment_policy(x, pre.policy, generator, cifar=True)
        out = resize(normalize(x, pre.mean, pre.std), pre.image_size)
    elif pre.augment == "imagenet":
        x = random_resized_crop(x.float(), pre.image_size, generator, scale=pre.scale)
        x = augment_policy(random_flip(x, generator), pre.policy, generator, cifar=False)
        out = normalize(x, pre.mean, pre.std)
    else:
        out = resize(normalize(x, pre.mean, pre.std), pre.image_size)
    return random_erasing(out, pre.random_erasing, generator)


def train_batch(
    x: Tensor, y: Tensor, pre: Preprocess, generator: torch.Generator | None, num_classes: int
) -> tuple[Tensor, Tensor]:
    """A stored batch (uint8 images, class indices) → what one training step takes:
    :func:`train_transform`'s images and, with mixup/CutMix on, class probabilities."""
    return mix_batch(train_transform(x, pre, generator), y, num_classes, pre, generator)


def eval_transform(x: Tensor, pre: Preprocess) -> Tensor:
    """uint8 batch → normalised float batch at the model's input size (no randomness).
    ImageNet-style runs resize to ``image_size / crop_pct`` (images stored at that side, as
    photo folders and published weights' data are, are not resized again) and take the
    centre crop."""
    if pre.augment == "imagenet" and x.shape[-1] != pre.image_size:
        side = pre.resize_side
        x = resize(x.float(), side) if x.shape[-1] != side else x.float()
        # torchvision's CenterCrop (torchvision's and timm's weights): an odd margin rounds
        top = round((side - pre.image_size) / 2)
        x = x[..., top : top + pre.image_size, top : top + pre.image_size]
        return normalize(x, pre.mean, pre.std)
    return resize(normalize(x, pre.mean, pre.std), pre.image_size)
