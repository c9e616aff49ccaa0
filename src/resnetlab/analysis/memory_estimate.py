"""How much memory a batch will take, and how much this process may still take: checked
before anything is allocated, so a batch that cannot fit is refused (or split) in one line
instead of the kernel killing the process.

**The estimate.** A forward (and for training a backward and an optimiser step) runs on the
``meta`` device, where tensors have shapes but no memory, under :class:`LiveBytes`, which adds
up the bytes of every storage an operator creates and takes them off when the storage dies:
the peak of that sum is what the eager ops keep alive at once (in-place ops and views add
nothing; a residual block's input stays alive for its shortcut). oneDNN's reorders, scratch
buffers and the allocator's fragmentation are not operators, so the peak is scaled by a
factor measured on this machine's peaks (peak RSS growth of a fresh process, 1 thread, fp32,
freed memory kept: :data:`INFERENCE_FACTOR`, :data:`TRAINING_FACTOR`; the measurements and
the command are in docs/bad-input.md, and ``tests/test_memory_estimate.py`` keeps a few within
1.5×). The weights are not counted: they exist before the check.

**The limit.** The least of: MemAvailable (``/proc/meminfo``), what is left under the
process's cgroup limit (v2 ``memory.max`` − ``memory.current``, or v1's
``memory.limit_in_bytes`` − ``memory.usage_in_bytes``), and what is left under
``RLIMIT_AS`` and ``RLIMIT_DATA`` (``ulimit -v`` / ``-d``). Each is what the kernel enforces:
MemAvailable alone once let a batch that fitted in RAM be killed inside a 4 GiB container.
``RESNETLAB_MEMORY_LIMIT`` (bytes, or ``512M``, ``4G``, …) caps it further: less memory
for resnetlab than the machine has, on a shared machine or in a test.

**Chunks.** Inference on many images is the same computed in smaller batches (every layer
works per image in eval mode), so ``eval`` and ``predict`` run a batch that does not fit in
the largest one that does (:func:`batch_that_fits`) and say so; a training step is not the
same in pieces (BatchNorm's batch statistics), so ``train`` refuses.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import resource
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from resnetlab.analysis.counting import ShapeError
from resnetlab.errors import ConfigError, InvalidValueError, first_line

# Measured peak RSS growth ÷ LiveBytes' peak, fresh process, fp32, 1 thread (docs/bad-input.md):
# inference 1.26–1.80 over 9 nets (ResNet-18/20/50/56/101, VGG-16, WRN-50-2, ResNeXt-50,
# pre-act ResNet-164), training (SGD with momentum, 2 steps) 0.94–1.63 over 8; measured again
# with the high-water mark reset before the step, training read 15–25% higher: 1.50.
INFERENCE_FACTOR = 1.55
TRAINING_FACTOR = 1.50

# Inference in pieces sizes each piece to this share of the free memory: the estimate has
# read as low as 0.85× the measured peak (ResNet-56; ResNet-50 in pieces: 0.94).
CHUNK_SHARE = 0.8

LIMIT_VARIABLE = "RESNETLAB_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class LiveBytes(TorchDispatchMode):
    """Under this mode, :attr:`peak` is the most bytes of tensor storage created inside it
    and alive at one time (storages that existed before, e.g. the weights, do not count)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.live = 0
        self.peak = 0
        self._alive: dict[int, Any] = {}

    def _gone(self, key: int, nbytes: int, _ref: Any) -> None:
        self.live -= nbytes
        self._alive.pop(key, None)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            if key in self._alive:
                continue  # an in-place op or a view: no new memory
            nbytes = storage.nbytes()
            self.live += nbytes
            self._alive[key] = weakref.ref(storage, functools.partial(self._gone, key, nbytes))
        self.peak = max(self.peak, self.live)
        return out


def _meta_like(t: torch.Tensor, *, grad: bool) -> torch.Tensor:
    return torch.empty_like(t, device="meta").requires_grad_(grad and t.requires_grad)


def memory_needed(model: nn.Module, input_size: tuple[int, ...], *, training: bool) -> int:
    """Bytes one fp32 step on an input of ``input_size`` needs beyond the weights (see the
    module docstring), run on a meta copy of ``model``: nothing is allocated. Raises
    :class:`ShapeError` if the input does not fit the model."""
    # The model's own modules, with meta stand-ins for its weights and buffers (no copy).
    params = {n: _meta_like(p, grad=training) for n, p in model.named_parameters()}
    buffers = {n: _meta_like(b, grad=False) for n, b in model.named_buffers()}
    dtype = next((p.dtype for p in params.values() if p.is_floating_point()), torch.float32)
    x = torch.zeros(input_size, device="meta", dtype=dtype)
    tracker = LiveBytes()
    was_training = model.training
    model.train(training)
    try:
        with tracker:
            if training:  # SGD's momentum buffers live across steps, then forward + backward
                momentum = [torch.zeros_like(p) for p in params.values() if p.requires_grad]
                out = functional_call(model, {**params, **buffers}, (x,))
                out.float().sum().backward()
                del momentum
            else:
                with torch.no_grad():
                    functional_call(model, {**params, **buffers}, (x,))
    except RuntimeError as err:
        raise ShapeError(
            f"input of size {tuple(input_size)} does not fit this model: {first_line(err)}"
        ) from None
    finally:
        model.train(was_training)
    factor = TRAINING_FACTOR if training else INFERENCE_FACTOR
    input_bytes = math.prod(input_size) * x.element_size()
    return input_bytes + math.ceil(factor * tracker.peak)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, else v1); None if unlimited."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if controllers == "":  # v2: memory.max and memory.current in the unified tree
            base = Path("/sys/fs/cgroup") / rel
            limit, used = _read_int(base / "memory.max"), _read_int(base / "memory.current")
        elif "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / rel
            limit = _read_int(base / "memory.limit_in_bytes")
            used = _read_int(base / "memory.usage_in_bytes")
        else:
            continue
        if limit is not None and used is not None and limit < 2**60:
            return max(limit - used, 0)
    return None


def _rlimit_room() -> int | None:
    """Bytes left under ``RLIMIT_AS`` and ``RLIMIT_DATA``; None if neither is set."""
    status: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                status[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return None
    rooms = []
    for limit_id, used_key in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft, _ = resource.getrlimit(limit_id)
        if soft != resource.RLIM_INFINITY and used_key in status:
            rooms.append(max(soft - status[used_key], 0))
    return min(rooms) if rooms else None


def memory_limit_setting() -> int | None:
    """``$RESNETLAB_MEMORY_LIMIT`` in bytes (``2147483648``, ``2G``, ``512MiB``, ``1.5g``),
    None when unset; a value that is not a size is a one-line :class:`ConfigError`."""
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not text:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", text, flags=re.IGNORECASE)
    if m is None:
        raise ConfigError(
            f"{LIMIT_VARIABLE}={text!r} is not a size: give bytes, or a number with K, M, G "
            "or T (4G)"
        )
    return int(float(m[1]) * _UNITS[m[2].upper()])


def free_memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory this process may still allocate (see the module docstring) for the CPU, the
    free device memory for CUDA, either capped by ``$RESNETLAB_MEMORY_LIMIT``; None where
    it cannot be told."""
    dev = torch.device(device)
    setting = memory_limit_setting()
    if dev.type == "cuda":
        free = int(torch.cuda.mem_get_info(dev)[0])
        return free if setting is None else min(free, setting)
    rooms = [_cgroup_room(), _rlimit_room(), setting]
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    rooms.append(int(line.split()[1]) * 1024)
    except OSError:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            rooms.append(int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")))
    known = [r for r in rooms if r is not None]
    return min(known) if known else None


def _size(nbytes: int) -> str:
    """Bytes for a message: ``4,844.7 GiB``, ``24.8 MiB``, ``508 KiB``."""
    if nbytes < 2**20:
        return f"{nbytes / 2**10:,.0f} KiB"
    return f"{nbytes / 2**30:,.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:,.1f} MiB"


def check_memory(
    model: nn.Module,
    input_size: tuple[int, ...],
    *,
    training: bool,
    device: torch.device | str = "cpu",
    hint: str = "use a smaller batch or image size",
    what: str = "",
) -> int:
    """Refuse (one-line ``ValueError`` with the estimate) a step that would not fit in the
    memory this process may still take, before anything is allocated: ``--image-size
    100000`` once asked for 1.2 TB and died in the allocator. ``what`` names the step in
    the message (default: training or inference). Returns the estimate in bytes."""
    need = memory_needed(model, input_size, training=training)
    free = free_memory_bytes(device)
    if free is not None and need > free:
        raise InvalidValueError(
            f"{what or ('training' if training else 'inference')} on a batch of "
            f"{'×'.join(map(str, input_size))} needs about {_size(need)}; "
            f"{torch.device(device).type} has {_size(free)} free ({hint})"
        )
    return need


@dataclass(frozen=True)
class BatchFit:
    """The batch an inference over ``asked`` images runs in: ``batch`` (= ``asked`` when
    it fits), and ``note``, one line saying why it is smaller ("" when it is not)."""

    asked: int
    batch: int
    note: str = ""

    @classmethod
    def of(cls, asked: int, batch: int, why: str) -> BatchFit:
        """``asked`` images run in batches of ``batch`` because ``why``."""
        if batch == asked:
            return cls(asked, batch)
        return cls(asked, batch, f"{why}: running {asked:,} images in batches of {batch:,}")


def batch_that_fits(
    model: nn.Module,
    input_size: tuple[int, ...],
    *,
    device: torch.device | str = "cpu",
    bound: tuple[int, str] | None = None,
) -> BatchFit:
    """The largest inference batch up to ``input_size[0]`` images whose estimate fits in
    :data:`CHUNK_SHARE` of the memory this process may still take (the estimate and the
    limit of :func:`check_memory`), and at most ``bound[0]`` (a program's largest batch;
    ``bound[1]`` says whose). If not even one image fits, :func:`check_memory`'s one-line
    refusal. Nothing is allocated: the estimate is linear in the batch, so two meta runs
    place it and a third confirms."""
    asked, rest = int(input_size[0]), tuple(input_size[1:])
    n, why = asked, ""
    if bound is not None and bound[0] < n:
        n, why = bound[0], f"{bound[1]} takes batches of at most {bound[0]:,}"
    free = free_memory_bytes(device)
    room = None if free is None else int(free * CHUNK_SHARE)
    if room is None or surely_fits(model, (n, *rest), room):
        return BatchFit.of(asked, n, why)
    need = memory_needed(model, (n, *rest), training=False)
    if free is not None and need > room:
        hint = "not even one image fits: use a smaller image size"
        one = check_memory(model, (1, *rest), training=False, device=device, hint=hint)
        per_image = max((need - one) / max(n - 1, 1), 1.0)
        n_before = n
        n = max(1, min(n - 1, int((room - one) / per_image) + 1))
        while n > 1 and memory_needed(model, (n, *rest), training=False) > room:
            n = max(1, int(n * 0.9))
        why = (
            f"a batch of {n_before:,} needs about {_size(need)}; "
            f"{torch.device(device).type} has {_size(free)} free"
        )
    return BatchFit.of(asked, n, why)


def surely_fits(model: nn.Module, input_size: tuple[int, ...], room: int) -> bool:
    """Whether an inference batch fits in ``room`` bytes by a bound that needs no trace (the
    first meta trace in a process imports torch's meta kernels: seconds, which ``predict``
    of one photo should not pay): ten fp32 tensors per image, each as wide as the widest
    layer at the input's full resolution. No network here comes near it (they narrow the
    map as they widen): the estimate is a fifth of it for ResNet-20 and pre-act ResNet-164,
    a tenth for VGG-16, 1/200 for ResNet-50."""
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    widest = max(
        [input_size[1], *(m.out_channels if isinstance(m, nn.Conv2d) else 1 for m in layers)]
    )
    features = max([0, *(m.out_features for m in layers if isinstance(m, nn.Linear))])
    per_image = 4 * math.prod(input_size[1:]) + 40 * (widest * math.prod(input_size[2:]) + features)
    return input_size[0] * per_image <= room
