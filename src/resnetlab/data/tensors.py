"""In-memory image datasets: every image of a small (CIFAR-size) dataset decoded once into
one uint8 tensor, with its labels, class names and normalisation statistics.

Augmentation then runs on whole batches as tensor ops (:mod:`resnetlab.data.augment`), so a
2-core CPU is never starved by per-image Python work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import torch
from torch import Tensor

from resnetlab.data.augment import Preprocess
from resnetlab.data.loaders import BatchPlan, TrainBatches, eval_batches
from resnetlab.errors import DataError as DataError


class Labelled(Protocol):
    """What choosing images by class needs: labels, class names, and a subset."""

    @property
    def labels(self) -> Tensor: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...

    def subset(self, index: Tensor) -> Self: ...


class Split(Protocol):
    """What in-memory (:class:`ImageTensors`) and streamed
    (:class:`~resnetlab.data.streaming.FileSplit`) splits share."""

    @property
    def labels(self) -> Tensor: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...

    @property
    def image_size(self) -> tuple[int, int, int]: ...

    def subset(self, index: Tensor) -> Split: ...

    def class_counts(self) -> list[int]: ...

    def to(self, device: torch.device) -> Split:
        """The split with its images on ``device`` (a streamed split stays on disk)."""
        ...

    def stats_images(self, *, seed: int) -> Tensor:
        """uint8 images to compute the normalisation statistics from."""
        ...

    def train_batches(self, pre: Preprocess, plan: BatchPlan, device: torch.device) -> Batches:
        """One epoch of augmented training batches, as ``plan`` draws them; with
        ``plan.world_size`` > 1, rank ``plan.rank``'s share of every global batch (see
        :func:`~resnetlab.data.loaders.shard_order`)."""
        ...

    def eval_batches(
        self, pre: Preprocess, *, batch_size: int, device: torch.device
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Every image once, in order, without augmentation."""
        ...


class Batches(Protocol):
    """One epoch of training batches, resumable mid-epoch from its generator state."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...

    def generator_state(self) -> Tensor: ...


def shuffled_per_class(data: Labelled, *, seed: int) -> list[Tensor]:
    """The indices of each class of ``data`` (class 0 first) in a random order drawn from one
    generator seeded with ``seed``: the same images are chosen on every run with that seed.
    A class of fewer than two images draws nothing (its order is the only one)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(len(data.classes)):
        idx = torch.nonzero(data.labels == c).flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)] if len(idx) > 1 else idx)
    return out


@dataclass(frozen=True)
class ImageTensors:
    """``images``: uint8 ``(N, C, H, W)``; ``labels``: int64 ``(N,)`` in ``[0, len(classes))``."""

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise DataError("labels must be int64 with one label per image")
        if len(self.labels) and (
            int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)
        ):
            raise DataError("a label is outside the class list")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, index: Tensor) -> ImageTensors:
        index = index.to(self.images.device)
        return ImageTensors(self.images[index], self.labels[index], self.classes)

    def to(self, device: torch.device) -> ImageTensors:
        """The same images on ``device`` (a GPU keeps all of CIFAR, 150 MB, resident)."""
        return ImageTensors(self.images.to(device), self.labels.to(device), self.classes)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def stats_images(self, *, seed: int) -> Tensor:
        return self.images  # every image: they are in memory already

    def train_batches(self, pre: Preprocess, plan: BatchPlan, device: torch.device) -> TrainBatches:
        return TrainBatches(self, pre, plan, device)

    def eval_batches(
        self, pre: Preprocess, *, batch_size: int, device: torch.device
    ) -> Iterator[tuple[Tensor, Tensor]]:
        return eval_batches(self, pre, batch_size=batch_size, device=device)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Cache to a ``.pt`` file (tensors and strings only: loads with ``weights_only``)."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp")
        torch.save(
            {"images": self.images, "labels": self.labels, "classes": list(self.classes)}, tmp
        )
        os.replace(tmp, p)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ImageTensors:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return cls(obj["images"], obj["labels"], tuple(obj["classes"]))
        except (OSError, KeyError, RuntimeError, TypeError, EOFError) as err:
            raise DataError(f"cannot read cached dataset {path}: {err}") from err


def channel_stats(
    images: Tensor, *, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, on the 0–1 scale.

    Computed in float64 over chunks, so 50,000 CIFAR images need little memory.
    """
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if count == 0:
        raise DataError("cannot compute statistics of an empty dataset")
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
