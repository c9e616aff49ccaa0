"""Batches from in-memory uint8 tensors, augmented on the fly as whole-batch tensor ops.

The order of an epoch and its augmentation draw from generators seeded by
``(seed, epoch)``, so an epoch is the same whenever it runs: a resumed run replays
exactly what an uninterrupted one would have done, including from the middle of an epoch
(``start_batch`` and the saved generator state).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from resnetlab.data.augment import Preprocess, eval_transform, train_transform
from resnetlab.data.tensors import ImageTensors


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class TrainBatches:
    """One epoch of shuffled, augmented training batches (the last partial batch dropped,
    so every step sees ``batch_size`` images and BN statistics stay comparable)."""

    def __init__(
        self,
        data: ImageTensors,
        pre: Preprocess,
        *,
        batch_size: int,
        seed: int,
        epoch: int,
        device: torch.device,
        start_batch: int = 0,
        generator_state: Tensor | None = None,
    ) -> None:
        self.data, self.pre, self.batch_size, self.device = data, pre, batch_size, device
        self.generator = epoch_generator(seed, epoch)
        self.order = torch.randperm(len(data), generator=self.generator)
        if generator_state is not None:
            self.generator.set_state(generator_state)
        self.start_batch = start_batch

    def __len__(self) -> int:
        return len(self.data) // self.batch_size

    def generator_state(self) -> Tensor:
        """Save with the batch index to resume mid-epoch."""
        return self.generator.get_state()

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for b in range(self.start_batch, len(self)):
            idx = self.order[b * self.batch_size : (b + 1) * self.batch_size]
            idx = idx.to(self.data.images.device)  # data may live on the GPU already
            x = self.data.images[idx].to(self.device, non_blocking=True)
            y = self.data.labels[idx].to(self.device, non_blocking=True)
            yield train_transform(x, self.pre, self.generator), y


def eval_batches(
    data: ImageTensors, pre: Preprocess, *, batch_size: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """Every image once, in order, without augmentation."""
    for start in range(0, len(data), batch_size):
        x = data.images[start : start + batch_size].to(device, non_blocking=True)
        y = data.labels[start : start + batch_size].to(device, non_blocking=True)
        yield eval_transform(x, pre), y
