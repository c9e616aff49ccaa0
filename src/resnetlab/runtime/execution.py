"""Where and how a model runs: the device, the autocast precision and the memory format
(:class:`Execution`), chosen once by :func:`choose` (overridable from the recipe), and the
hardware facts that choice and the speed reports rest on."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from resnetlab.errors import InvalidValueError


@dataclass(frozen=True)
class Execution:
    """The device a model runs on, the autocast dtype of its forward passes and whether its
    inputs and weights are channels_last (NHWC)."""

    device: torch.device
    autocast: torch.dtype | None  # None: plain fp32
    channels_last: bool

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast]


def autocast(place: Execution) -> contextlib.AbstractContextManager[None]:
    """The autocast context of ``place`` (none for plain fp32)."""
    if place.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(place.device.type, dtype=place.autocast)


def to_input(x: Tensor, place: Execution) -> Tensor:
    """A batch in the memory format ``place`` runs in."""
    return x.contiguous(memory_format=torch.channels_last) if place.channels_last else x


# The CPU features that decide which training and inference paths run fast, as /proc/cpuinfo
# names them (AMX: Intel's matrix tiles; AVX-512 BF16/VNNI: bf16 and int8 dot products).
ISA_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")


def code_version() -> str:
    """resnetlab's version, plus the git commit when running from a checkout."""
    from pathlib import Path

    from resnetlab.version import __version__

    here = Path(__file__).resolve().parent
    if not (here.parents[2] / "pyproject.toml").is_file():  # src/resnetlab/runtime
        # Installed, not a checkout: a git repository around site-packages is someone else's.
        return f"resnetlab {__version__}"
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"resnetlab {__version__}" + (f" (git {commit})" if commit else "")


def hardware() -> str:
    """A one-line description of the machine, for reports: CPU model and the ISA features
    of :data:`ISA_FLAGS` it has, threads, torch, GPU."""
    import platform
    from pathlib import Path

    cpu, model, flags = platform.processor() or platform.machine(), "", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                cpu = model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = " ".join(f for f in ISA_FLAGS if f in flags)
    n = torch.get_num_threads()
    text = f"{cpu}{f' ({isa})' if isa else ''}, {n} thread{'s' * (n != 1)}"
    text += f", torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose(
    device: str = "auto", precision: str = "auto", channels_last: bool | None = None
) -> Execution:
    """``auto``: CUDA if present, else CPU; bf16 autocast where the hardware runs it fast
    (CUDA with bf16 support, or a CPU with AVX-512 BF16/AMX), else fp32. channels_last
    follows reduced precision unless set."""
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise InvalidValueError(f"unknown device {device!r}") from err
        if dev.type not in ("cpu", "cuda", "mps", "xpu"):  # meta: shapes only, no data
            raise InvalidValueError(f"device {device!r} cannot run a model; use cpu or cuda")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InvalidValueError("device cuda was asked for, but no CUDA GPU is available")
    if precision == "auto":
        fast = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_has_fast_bf16()
        precision = "bf16" if fast else "fp32"
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if dtype is torch.float16 and dev.type != "cuda":
        raise InvalidValueError("fp16 autocast needs a CUDA GPU; use bf16 on a CPU")
    cl = dtype is not None if channels_last is None else channels_last
    return Execution(dev, dtype, cl)


def matmul_gflops(
    dtype: torch.dtype, device: str | torch.device = "cpu", *, n: int = 2048, reps: int = 10
) -> float:
    """GFLOP/s of one ``n``×``n`` matmul in ``dtype`` (int8: ``torch._int_mm``, GOP/s) on
    ``device``: the median of ``reps``
    timed calls after a warm-up. The arithmetic rate that the speed benchmarks set their
    figures against, measured in the same run."""
    dev = torch.device(device)
    if dtype == torch.int8:  # int8 × int8 → int32, the rate int8 convolutions can reach
        a = torch.randint(-128, 128, (n, n), device=dev, dtype=dtype)
        b = torch.randint(-128, 128, (n, n), device=dev, dtype=dtype)
        mm: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch._int_mm
    else:
        a = torch.randn(n, n, device=dev, dtype=dtype)
        b = torch.randn(n, n, device=dev, dtype=dtype)
        mm = torch.matmul

    def timed() -> float:
        start = time.perf_counter()
        mm(a, b)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - start

    timed()
    times = sorted(timed() for _ in range(reps))
    return 2 * n**3 / times[len(times) // 2] / 1e9


def compile_unavailable(device: torch.device) -> str:
    """Why ``torch.compile`` cannot build code for ``device`` here ("" when it can): on a
    CPU, Inductor compiles C++ and needs a compiler (``g++``/``clang++``, or ``$CXX``)."""
    if device.type != "cpu":
        return ""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as err:  # Inductor raises its own error types for a missing compiler
        return f"no C++ compiler for torch.compile's CPU code ({str(err).strip()[:120]})"
    return ""


# The fewest optimiser steps for which ``run.compile: auto`` compiles: a cold build measured
# 53 s on the AMX Xeon (ResNet-20, batch 128, one thread, beside a training), and the
# compiled step saved 22-111 ms there (docs/speed.md), so the build is repaid after roughly
# 500-2,500 steps; a shorter run trains as fast eager.
COMPILE_MIN_STEPS = 1000


def compile_pays(device: torch.device, steps: int | None = None) -> tuple[bool, str]:
    """What ``run.compile: auto`` does on ``device`` for a run of ``steps`` optimiser steps
    (``None``: a long one), and why. Measured with ``benchmarks/train_step.py --compile`` on
    both CPUs this project has met: on a Xeon with AMX the convolutions run so fast that BN,
    ReLU and the adds dominate a step, and fusing them made a ResNet-20/56 step 1.3x faster;
    on a Zen 4 EPYC (AVX-512 BF16, no AMX) the convolutions dominate and the compiled step
    measured no faster, after a build of ~30 s. So: on where the CPU has AMX tiles and the
    run is long enough to repay the build (:data:`COMPILE_MIN_STEPS`); off elsewhere, GPUs
    included (not yet measured)."""
    if device.type != "cpu":
        return False, "not measured on this device yet"
    try:
        amx = bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        amx = False
    if not amx:
        return False, "no AMX on this CPU: the compiled step measured no faster without it"
    if steps is not None and steps < COMPILE_MIN_STEPS:
        return False, (
            f"{steps:,} steps are too few to repay the build (about a minute) on this CPU; "
            f"it compiles from {COMPILE_MIN_STEPS:,}"
        )
    return True, "this CPU has AMX, where the compiled step measured 1.3x faster"
