"""This process's place in a data-parallel job (rank, size): the collectives that training,
evaluation and checkpointing share. ``Group()`` is a single process, where every method is
a no-op; :func:`resnetlab.train.distributed.session` joins a ``torchrun`` launch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from resnetlab.data.tensors import Split

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    """This process's place in the job; ``Group()`` is a single-process run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and logs."""
        return self.rank == 0

    def sum(self, values: Sequence[Tensor | float], *, device: torch.device) -> list[float]:
        """``values`` summed over the ranks in one collective, read back to the host (one
        sync). Counts stay exact in float64 up to 2**53."""
        t = torch.stack([torch.as_tensor(v, device=device).to(torch.float64) for v in values])
        if self.size > 1:
            dist.all_reduce(t)
        out: list[float] = t.tolist()
        return out

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (picklable values)."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def share_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (BN running statistics) to every rank: after a training step
        each rank's BN has folded in its own batch, and checkpoints hold rank 0's."""
        if self.size > 1:
            for b in model.buffers():
                dist.broadcast(b, src=0)

    def shard(self, split: Split) -> Split:
        """This rank's contiguous slice of ``split`` (sizes differ by at most one)."""
        if self.size == 1:
            return split
        n = len(split)
        lo, hi = self.rank * n // self.size, (self.rank + 1) * n // self.size
        return split.subset(torch.arange(lo, hi))

    def device(self, device: torch.device) -> torch.device:
        """Under torchrun every process drives the GPU of its ``LOCAL_RANK``."""
        if self.size > 1 and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in ``DistributedDataParallel`` (which averages gradients over ranks), or
        ``model`` itself in a single process."""
        if self.size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
