"""Keep freed memory in the process, so large activations are not page-faulted in per call.

glibc's ``malloc`` serves every request above its mmap threshold (32 MiB at most) with a
fresh ``mmap`` and gives it back to the kernel on ``free``. A CNN whose activations are
larger than that (ResNet-50 at batch 16: 51 MiB for each stage-1 output in fp32) therefore
faults in, and has the kernel zero, every page of those tensors on every forward pass. On the
development machine (2 cores) that was 36% of ResNet-50's default eager fp32 time: 12.2
against 19.0 images/s with freed memory kept (``benchmarks/inference.py``, one run).
ONNX Runtime keeps its own memory arena and never pays it; tcmalloc (``LD_PRELOAD``) avoids
it too.

:func:`keep_freed_memory` asks glibc (``mallopt``) to serve large requests from its heap and
never to trim the heap, so freed activations are reused by the next call. The cost: the
process keeps its peak memory until it exits. It changes the whole process, so the library
calls it only where asked (``optimize_for_inference(keep_memory=True)``, the default there,
and the commands that run models and own their process: ``cli.RUNS_MODELS``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int: trim only above 2 GiB of free heap


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):  # not glibc (musl, …): nothing to tune
        return None
    return libc


_kept = False


def keep_freed_memory() -> bool:
    """Tell glibc to reuse freed memory instead of returning it to the kernel (see the module
    docstring). Idempotent; returns whether the setting is in force (False where the C
    library is not glibc)."""
    global _kept
    libc = _glibc()
    if libc is None:
        return False
    if not _kept:
        _kept = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)
        )
    return _kept
