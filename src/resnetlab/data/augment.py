"""Augmentation and preprocessing as batched tensor ops on ``(N, C, H, W)`` batches.

One call transforms a whole batch on whatever device it lives on, with an explicit
``torch.Generator`` so a run is repeatable and resumable. Inputs are uint8 (0-255);
outputs are normalised float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Augment = Literal["cifar", "imagenet", "none"]


@dataclass(frozen=True)
class Preprocess:
    """Everything needed to turn stored uint8 images into model inputs; saved in every
    checkpoint so evaluation and prediction use exactly the training preprocessing.

    ``mean``/``std`` are the training set's own per-channel statistics (0-1 scale).
    ``image_size`` is the model's input side; ``resize_from`` > 0 means images are first
    resized to that side (seed 004 fine-tunes CIFAR's 32×32 images at 128×128).
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

    @property
    def resize_side(self) -> int:
        """The side an image is resized to before the evaluation centre crop."""
        return round(self.image_size / self.crop_pct)


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


def train_transform(x: Tensor, pre: Preprocess, generator: torch.Generator | None) -> Tensor:
    """uint8 batch → augmented, normalised float batch for training."""
    if pre.augment == "cifar":
        x = random_flip(random_crop(x, pre.padding, generator), generator)
        return resize(normalize(x, pre.mean, pre.std), pre.image_size)
    if pre.augment == "imagenet":
        x = random_resized_crop(x.float(), pre.image_size, generator, scale=pre.scale)
        return normalize(random_flip(x, generator), pre.mean, pre.std)
    return resize(normalize(x, pre.mean, pre.std), pre.image_size)


def eval_transform(x: Tensor, pre: Preprocess) -> Tensor:
    """uint8 batch → normalised float batch at the model's input size (no randomness).
    ImageNet-style runs resize to ``image_size / crop_pct`` (images stored at that side, as
    photo folders and published weights' data are, are not resized again) and take the
    centre crop."""
    if pre.augment == "imagenet" and x.shape[-1] != pre.image_size:
        side = pre.resize_side
        x = resize(x.float(), side) if x.shape[-1] != side else x.float()
        top = (side - pre.image_size) // 2
        x = x[..., top : top + pre.image_size, top : top + pre.image_size]
        return normalize(x, pre.mean, pre.std)
    return resize(normalize(x, pre.mean, pre.std), pre.image_size)
