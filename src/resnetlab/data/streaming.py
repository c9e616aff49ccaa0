"""Large image folders: decoded on the fly by ``DataLoader`` workers, never all in memory.

Workers decode each file with Pillow, resize its shorter side to ``size`` and take the
centre square, so every batch is a uint8 ``(N, 3, size, size)`` tensor; augmentation then
runs on the whole batch as tensor ops, exactly as for in-memory data. The order of an
epoch comes from the same ``(seed, epoch)`` generator as :class:`TrainBatches`, so a
streamed run resumes mid-epoch the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from resnetlab.data.augment import Preprocess, eval_transform, train_batch
from resnetlab.data.images import ImageError, decode_square
from resnetlab.data.loaders import BatchPlan
from resnetlab.data.tensors import DataError


@dataclass(frozen=True)
class FileSplit:
    """A split of an image folder on disk: files (relative to ``root``) and labels."""

    root: Path
    files: tuple[str, ...]
    labels: Tensor  # int64 (N,)
    classes: tuple[str, ...]
    size: int  # side of the square each image is decoded to
    interpolation: str = "bilinear"  # the resize filter (data.images.resample_filter)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def image_size(self) -> tuple[int, int, int]:
        return 3, self.size, self.size

    def subset(self, index: Tensor) -> FileSplit:
        files = tuple(self.files[int(i)] for i in index)
        return FileSplit(
            self.root, files, self.labels[index], self.classes, self.size, self.interpolation
        )

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def to(self, device: torch.device) -> FileSplit:
        return self  # the files stay on disk; batches are moved as they are decoded

    def stats_images(self, *, seed: int) -> Tensor:
        return sample_stats(self, seed=seed)

    def train_batches(
        self, pre: Preprocess, plan: BatchPlan, device: torch.device
    ) -> StreamBatches:
        return StreamBatches(self, pre, plan, device)

    def eval_batches(
        self, pre: Preprocess, *, batch_size: int, device: torch.device
    ) -> Iterator[tuple[Tensor, Tensor]]:
        return stream_eval_batches(self, pre, batch_size=batch_size, device=device)


class _Files(Dataset[Any]):
    """Item ``i`` of ``order``: the decoded image and its label, or None if unusable."""

    def __init__(self, split: FileSplit, order: Tensor) -> None:
        self.split, self.order = split, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[Tensor, int] | None:
        j = int(self.order[i])
        name = self.split.files[j]
        try:
            data = (self.split.root / name).read_bytes()
            image = decode_square(
                data, name, self.split.size, interpolation=self.split.interpolation
            )
            return image, int(self.split.labels[j])
        except (OSError, ImageError):
            return None  # skipped: a long run must not die on one bad file


def _collate(items: list[tuple[Tensor, int] | None]) -> tuple[Tensor, Tensor]:
    good = [it for it in items if it is not None]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good])


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def _loader(
    split: FileSplit, order: Tensor, batch_size: int, workers: int, device: torch.device
) -> DataLoader[Any]:
    return DataLoader(
        _Files(split, order),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        drop_last=False,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


class StreamBatches:
    """The streamed twin of :class:`~resnetlab.data.loaders.TrainBatches`."""

    def __init__(
        self,
        data: FileSplit,
        pre: Preprocess,
        plan: BatchPlan,
        device: torch.device,
        workers: int | None = None,
    ) -> None:
        self.data, self.pre, self.batch_size, self.device = data, pre, plan.batch_size, device
        order, self.generator = plan.draw(len(data))
        self.batches = -(-len(order) // plan.batch_size)  # the last may be smaller
        self.start_batch = plan.start_batch
        self.order = order[plan.start_batch * plan.batch_size :]
        self.workers = default_workers() if workers is None else workers
        self.parallel = plan.world_size > 1

    def __len__(self) -> int:
        return self.batches

    def generator_state(self) -> Tensor:
        return self.generator.get_state()

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in _loader(self.data, self.order, self.batch_size, self.workers, self.device):
            if len(y) == 0:
                if self.parallel:  # skipping would leave the other ranks waiting for this one
                    raise DataError("a whole batch of unreadable image files")
                continue
            x = x.to(self.device, non_blocking=True)
            yield train_batch(
                x, y.to(self.device), self.pre, self.generator, len(self.data.classes)
            )


def stream_eval_batches(
    data: FileSplit,
    pre: Preprocess,
    *,
    batch_size: int,
    device: torch.device,
    workers: int | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    order = torch.arange(len(data))
    n = default_workers() if workers is None else workers
    for x, y in _loader(data, order, batch_size, n, device):
        if len(y):
            yield eval_transform(x.to(device, non_blocking=True), pre), y.to(device)


def sample_stats(data: FileSplit, *, count: int = 2000, seed: int = 0) -> Tensor:
    """A seeded random sample of decoded images (for the normalisation statistics)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:count]
    items = [it for it in (_Files(data, idx)[i] for i in range(len(idx))) if it is not None]
    return torch.stack([x for x, _ in items])
