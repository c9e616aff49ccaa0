"""Data-parallel training under ``torchrun``: one process per device, gradients averaged by
``DistributedDataParallel``.

``torchrun`` starts N copies of the same command and tells each who it is through ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``. :func:`session` joins
them into one process group: NCCL on CUDA (rank r on ``cuda:LOCAL_RANK``), gloo on CPU.
Without those variables, or with ``WORLD_SIZE=1``, there is no process group and every
:class:`Group` method is a no-op, so a single-process run does exactly what it did before.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.distributed_c10d import PrefixStore
from torch.distributed.rendezvous import rendezvous

from resnetlab.data.loaders import MIN_BATCH
from resnetlab.errors import InvalidValueError, env_int
from resnetlab.runtime.config import TrainConfig
from resnetlab.runtime.folder_layout import LAST
from resnetlab.runtime.group import Group
from resnetlab.train.start_or_resume import clear_dead_run, dead_run_files

log = logging.getLogger(__name__)

# How long a rank waits for the others to join: torch's own default is its 30-minute collective
# timeout, so a shell with stale torchrun variables (WORLD_SIZE=2, no peer) hung silently.
JOIN_TIMEOUT_S = 120.0
JOIN_TIMEOUT_ENV = "RESNETLAB_JOIN_TIMEOUT"
STOP_REASONS = ("time", "sigterm", "sigint")  # when ranks disagree, the last one named wins
RESTART_ENV = "TORCHELASTIC_RESTART_COUNT"  # set by torchrun: 0, then 1, 2, … after failures


def stop_flags(reason: str) -> list[float]:
    """A stop reason as numbers that add up across ranks (see :func:`agreed_stop`)."""
    return [float(reason == r) for r in STOP_REASONS]


def agreed_stop(flags: Sequence[float]) -> str:
    """The reason every rank acts on, from the summed :func:`stop_flags`: the most urgent
    one any rank saw (a SIGTERM on one rank stops them all at the same step)."""
    named = [r for r, f in zip(STOP_REASONS, flags, strict=True) if f > 0]
    return named[-1] if named else ""


@contextmanager
def session(device: str = "auto") -> Iterator[Group]:
    """The process group of a ``torchrun`` launch, joined here and left at the end.

    ``device`` is ``run.device``: CUDA (NCCL) unless it is ``cpu`` or no GPU is present,
    else gloo. A default group someone already initialised (a test, a library caller) is
    used as it is and left open."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        yield Group(dist.get_rank(), dist.get_world_size(), local)
        return
    size = env_int("WORLD_SIZE", 1)
    if size <= 1:
        yield Group()
        return
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank, local = env_int("RANK", None), env_int("LOCAL_RANK", 0)
    cuda = device != "cpu" and torch.cuda.is_available()
    store = _join(rank, size)
    if cuda:
        torch.cuda.set_device(local)
        dist.init_process_group(
            "nccl", store=store, rank=rank, world_size=size, device_id=torch.device("cuda", local)
        )
    else:
        dist.init_process_group("gloo", store=store, rank=rank, world_size=size)
    try:
        yield Group(rank, size, local)
    finally:
        dist.destroy_process_group()


def _join(rank: int, size: int) -> Any:
    """The ``env://`` rendezvous store, with the wait for the other ranks bounded by
    ``$RESNETLAB_JOIN_TIMEOUT`` seconds (default :data:`JOIN_TIMEOUT_S`); the store then gets
    torch's usual timeout back, so a long evaluation on one rank does not break the others."""
    raw = os.environ.get(JOIN_TIMEOUT_ENV, str(JOIN_TIMEOUT_S))
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 < wait < 1e7:
        raise InvalidValueError(f"{JOIN_TIMEOUT_ENV} must be a number of seconds, got {raw!r}")
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        with _cpp_log_held_back():  # c10d logs each retry with a C++ stack to stderr
            handshake = rendezvous("env://", rank, size, timeout=timedelta(seconds=wait))
            store, _, _ = next(handshake)
    except (RuntimeError, ValueError) as err:  # DistNetworkError, DistStoreError: a timeout
        raise InvalidValueError(
            f"rank {rank} of {size} could not join the others at {where} within {wait:g} s "
            f"({type(err).__name__}); WORLD_SIZE/RANK/MASTER_ADDR/MASTER_PORT are set but no "
            "peer came: stale variables from another launch? Unset them, or start with "
            f"torchrun (${JOIN_TIMEOUT_ENV} sets the wait)"
        ) from None
    store.set_timeout(timedelta(minutes=30))
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # torchrun's static rendezvous (--master-port) keeps one store across restarts of the
        # workers, and the failed attempt's keys (gloo's addresses) would mislead the next.
        store = PrefixStore(f"resnetlab/attempt_{restart_count()}/", store)
    return store


@contextmanager
def _cpp_log_held_back() -> Iterator[None]:
    """Hold back what C++ code writes to stderr (file descriptor 2) in the block: replayed
    if the block succeeds, dropped if it raises (its one-line error says it all)."""
    import sys
    import tempfile

    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        sys.stderr.write(held.read().decode(errors="replace"))


def restart_count() -> int:
    """How often ``torchrun`` has restarted this worker group (0: its first start, or no
    ``torchrun``)."""
    try:
        return max(int(os.environ.get(RESTART_ENV, "0")), 0)
    except ValueError:
        return 0


def restart_point(run_dir: Path) -> Path | None:
    """Where a ``torchrun`` restart continues the run named ``run_dir``: its ``last.pt`` if
    the worker group was restarted after a failure and this launch saved that checkpoint;
    None for a fresh start (the files of an attempt that died before its first checkpoint
    are removed first, so that the new attempt does not refuse its own folder).

    ``torchrun --max-restarts=N`` restarts every worker with the same command line, so a run
    with a fixed ``--name`` meets its own folder. Files count as this launch's when they were
    written after the ``torchrun`` agent (the worker's parent process) started: an older
    run's folder under that name is left alone (the fresh start's one-line error stands).
    Read from ``/proc``: elsewhere than Linux a restart starts afresh. Rank 0 alone calls
    this (it may remove files); the others take its answer."""
    count, started = restart_count(), _parent_started()
    if count == 0 or started is None:
        return None
    last = run_dir / LAST
    if last.is_file():
        if last.stat().st_mtime < started:
            return None
        log.info(f"torchrun restart {count}: resuming {last}, saved by this launch")
        return last
    left = dead_run_files(run_dir)
    if left and all((run_dir / name).stat().st_mtime >= started for name in left):
        clear_dead_run(run_dir)
        log.info(
            f"torchrun restart {count}: the failed attempt saved no checkpoint; starting "
            f"{run_dir} afresh (removed its {', '.join(left)})"
        )
    return None


def _parent_started() -> float | None:
    """When this process's parent started (seconds since the epoch, to about a second)."""
    try:
        stat = Path(f"/proc/{os.getppid()}/stat").read_text(encoding="ascii")
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, after "comm)"
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text(encoding="ascii").splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def fit_batches(cfg: TrainConfig, count: int, world_size: int) -> TrainConfig:
    """``cfg`` with ``data.batch_size`` reduced to fit ``count`` training images shared by
    ``world_size`` processes (said in one line); too few images for one batch of
    :data:`~resnetlab.data.loaders.MIN_BATCH` a process is bad input."""
    per_rank = count // world_size
    processes = f" shared by {world_size} processes" if world_size > 1 else ""
    if per_rank < MIN_BATCH:
        raise InvalidValueError(
            f"{count} training images{processes} are too few: BatchNorm needs batches of "
            f"{MIN_BATCH} or more{' in each process' if world_size > 1 else ''}"
        )
    batch = cfg.data.batch_size
    if batch <= per_rank:
        return cfg
    log.info(
        f"data.batch_size {batch} is larger than the {count} training images{processes}: "
        f"using batches of {per_rank}"
    )
    return replace(cfg, data=replace(cfg.data, batch_size=per_rank))


def scaled_lr(
    lr: float, *, batch_size: int, world_size: int, reference: int | None, enabled: bool = True
) -> float:
    """The linear scaling rule (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): the
    learning rate follows the global batch ``batch_size × world_size`` relative to the batch
    ``reference`` the recipe's lr was set for. ``reference=None`` or ``enabled=False``: as
    given."""
    if not enabled or reference is None:
        return lr
    return lr * batch_size * world_size / reference


# --------------------------------------------------------------------------- synchronised BN


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) that gradients pass through: every rank's output depends on every
    rank's input, so the input's gradient is the sum of the outputs' gradients."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        g = grad.clone()
        dist.all_reduce(g)
        return g


def _sum_over_ranks(x: Tensor) -> Tensor:
    out: Tensor = _SumOverRanks.apply(x)  # type: ignore[no-untyped-call]
    return out


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks'
    images), on any device and backend. ``nn.SyncBatchNorm`` does this on GPUs but refuses CPU
    tensors; this is its CPU (gloo) twin. Two all-reduces per layer, the sum and then the
    squared deviations, so the variance is computed in two passes as a single process's BN
    computes it. Outside training, or without a group, it is plain BatchNorm2d."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16/fp16: in fp32
        local = torch.cat([xf.sum((0, 2, 3)), xf.new_tensor([xf.numel() / c])])
        total = _sum_over_ranks(local)
        count = total[c]
        mean = total[:c] / count
        centred = xf - mean.view(1, c, 1, 1)
        var = _sum_over_ranks((centred * centred).sum((0, 2, 3))) / count
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.weight is not None and self.bias is not None:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                tracked = self.num_batches_tracked
                assert tracked is not None
                tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                self.running_mean.lerp_(mean, m)
                self.running_var.lerp_(var * count / (count - 1), m)  # unbiased, as BN keeps
        return y.to(x.dtype)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d of ``model`` normalising over the global batch: ``nn.SyncBatchNorm``
    on CUDA, :class:`GlobalBatchNorm` elsewhere. Parameter and buffer names are unchanged, so
    checkpoints load into the plain model."""
    if device.type == "cuda":
        converted: nn.Module = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
        return converted
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            bn = GlobalBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            like = next((t for t in child.state_dict().values() if t.is_floating_point()), None)
            if like is not None:
                bn.to(like)  # the dtype and device of the layer it replaces
            bn.load_state_dict(child.state_dict())
            for new, old in zip(bn.parameters(), child.parameters(), strict=True):
                new.requires_grad_(old.requires_grad)
            bn.train(child.training)
            setattr(model, name, bn)
        else:
            sync_batchnorm(child, device)
    return model
