"""Batches from in-memory uint8 tensors, augmented on the fly as whole-batch tensor ops.

The order of an epoch and its augmentation draw from generators seeded by
``(seed, epoch)``, so an epoch is the same whenever it runs: a resumed run replays
exactly what an uninterrupted one would have done, including from the middle of an epoch
(``start_batch`` and the saved generator state).

Under data parallelism (``world_size`` processes) every rank draws the same order and takes
its own slice of each global batch of ``batch_size × world_size`` images
(:func:`shard_order`): rank 0's batch followed by rank 1's … is exactly the batch a single
process with the global batch size would see. Augmentation draws from a generator of the
rank's own, so each rank's epoch is still fixed by ``(seed, epoch, rank)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from resnetlab.data.augment import Preprocess, eval_transform, train_batch


class HeldImages(Protocol):
    """Images held as one uint8 tensor (:class:`~resnetlab.data.tensors.ImageTensors`)."""

    @property
    def images(self) -> Tensor: ...

    @property
    def labels(self) -> Tensor: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...


def epoch_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch + (rank << 40))


# BatchNorm's training statistics need at least this many images in a batch (per process).
MIN_BATCH = 2


@dataclass(frozen=True)
class EpochShape:
    """How ``count`` images fall into batches of ``batch_size`` a rank over ``world_size``
    ranks: ``full`` whole global batches, then a last, smaller batch of ``last`` images a
    rank (0: none), and ``dropped`` images that fit no batch (a last batch of fewer than
    :data:`MIN_BATCH` images a rank, or the remainder the ranks cannot share evenly)."""

    full: int
    last: int
    dropped: int

    @property
    def steps(self) -> int:
        return self.full + (1 if self.last else 0)


def epoch_shape(
    count: int, batch_size: int, world_size: int = 1, keep_last: bool = True
) -> EpochShape:
    full, tail = divmod(count, batch_size * world_size)
    last = tail // world_size
    last = last if last >= MIN_BATCH and keep_last else 0
    return EpochShape(full, last, tail - last * world_size)


def shard_order(
    order: Tensor, batch_size: int, rank: int = 0, world_size: int = 1, keep_last: bool = True
) -> Tensor:
    """Rank ``rank``'s part of an epoch's ``order``: the ``rank``-th slice of ``batch_size``
    of every global batch of ``batch_size × world_size``, then its slice of the last,
    smaller global batch (:func:`epoch_shape`: kept where each rank gets at least
    :data:`MIN_BATCH` images). The ranks' parts are disjoint and, batch by batch,
    concatenate to the single-process order."""
    shape = epoch_shape(len(order), batch_size, world_size, keep_last)
    whole = shape.full * batch_size * world_size
    head = order[:whole].view(shape.full, world_size, batch_size)[:, rank].flatten()
    tail = order[whole : whole + shape.last * world_size].view(world_size, shape.last)[rank]
    return torch.cat([head, tail])


def shard_generator(
    generator: torch.Generator, seed: int, epoch: int, rank: int
) -> torch.Generator:
    """The augmentation generator of ``rank``: rank 0 goes on with the order's generator (as
    a single process does), the others get one of their own."""
    return generator if rank == 0 else epoch_generator(seed, epoch, rank)


@dataclass(frozen=True)
class BatchPlan:
    """Which batches one epoch of training draws, as one value: ``batch_size`` images a
    rank, the epoch's order and augmentation fixed by ``(seed, epoch)``, from batch
    ``start_batch`` on with the augmentation generator at ``generator_state`` (an epoch
    resumed midway), and rank ``rank``'s share of ``world_size`` (data parallelism)."""

    batch_size: int
    seed: int
    epoch: int
    start_batch: int = 0
    generator_state: Tensor | None = None
    rank: int = 0
    world_size: int = 1
    keep_last: bool = True  # the last, smaller batch (data.last_batch)

    def draw(self, count: int) -> tuple[Tensor, torch.Generator]:
        """This rank's order of an epoch of ``count`` images (every batch of it, from the
        first), and the generator its augmentation draws from, at the planned state."""
        order_generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(count, generator=order_generator)
        order = shard_order(order, self.batch_size, self.rank, self.world_size, self.keep_last)
        generator = shard_generator(order_generator, self.seed, self.epoch, self.rank)
        if self.generator_state is not None:
            generator.set_state(self.generator_state)
        return order, generator


class TrainBatches:
    """One epoch of shuffled, augmented training batches (the last, smaller batch kept where
    it holds at least :data:`MIN_BATCH` images, see :func:`epoch_shape`)."""

    def __init__(
        self, data: HeldImages, pre: Preprocess, plan: BatchPlan, device: torch.device
    ) -> None:
        self.data, self.pre, self.batch_size, self.device = data, pre, plan.batch_size, device
        self.order, self.generator = plan.draw(len(data))
        self.start_batch = plan.start_batch

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def generator_state(self) -> Tensor:
        """Save with the batch index to resume mid-epoch."""
        return self.generator.get_state()

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for b in range(self.start_batch, len(self)):
            idx = self.order[b * self.batch_size : (b + 1) * self.batch_size]
            idx = idx.to(self.data.images.device)  # data may live on the GPU already
            x = self.data.images[idx].to(self.device, non_blocking=True)
            y = self.data.labels[idx].to(self.device, non_blocking=True)
            yield train_batch(x, y, self.pre, self.generator, len(self.data.classes))


def eval_batches(
    data: HeldImages, pre: Preprocess, *, batch_size: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """Every image once, in order, without augmentation."""
    for start in range(0, len(data), batch_size):
        x = data.images[start : start + batch_size].to(device, non_blocking=True)
        y = data.labels[start : start + batch_size].to(device, non_blocking=True)
        yield eval_transform(x, pre), y
