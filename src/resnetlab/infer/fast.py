"""Turning a trained model into its fastest inference form: every engine
(:mod:`~resnetlab.infer.engines`) built on the same prepared model
(:mod:`~resnetlab.infer.folding`: eval mode, BN folded, NHWC), checked against the fp32
model and timed.

:func:`optimize_for_inference` times the candidates on the batch size you care about and
returns the fastest, saying which it picked and what each measured. By default it also
keeps freed memory in the process (:mod:`resnetlab.infer.memory`): without that, glibc maps
and unmaps every activation over 32 MiB on each call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from resnetlab.errors import NoEngineError, first_line
from resnetlab.infer.engines import INT8_ENGINES, Runner, build_runner
from resnetlab.infer.folding import prepare
from resnetlab.infer.memory import keep_freed_memory
from resnetlab.runtime.execution import cpu_has_fast_bf16


def time_runner(
    run: Runner, x: Tensor, *, min_seconds: float = 2.0, warmup: int = 2, max_iters: int = 200
) -> float:
    """Median seconds per call over at least ``min_seconds`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        run(x)
    times: list[float] = []
    start = time.perf_counter()
    while (time.perf_counter() - start < min_seconds or len(times) < 3) and len(times) < max_iters:
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


@dataclass
class EngineResult:
    engine: str
    seconds_per_batch: float
    batch_size: int
    max_rel_error: float  # against the unfolded fp32 eager model, on the timing batch

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.seconds_per_batch


@dataclass
class FastModel:
    """The chosen engine, callable on image batches, and what every candidate measured."""

    engine: str
    run: Runner
    results: list[EngineResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    memory_kept: bool = False  # freed memory reused by the next call (glibc heap kept)

    def __call__(self, x: Tensor) -> Tensor:
        return self.run(x)

    def report(self) -> str:
        lines = [f"{'engine':<14} {'images/s':>10} {'ms/batch':>10} {'max rel err':>12}"]
        for r in sorted(self.results, key=lambda r: r.seconds_per_batch):
            mark = "  ← picked" if r.engine == self.engine else ""
            ms = 1000 * r.seconds_per_batch
            lines.append(
                f"{r.engine:<14} {r.images_per_s:>10.1f} {ms:>10.1f} {r.max_rel_error:>12.2e}{mark}"
            )
        lines += [f"{e:<14} skipped: {why}" for e, why in self.skipped.items()]
        if self.memory_kept:
            lines.append("(freed memory kept in the process: see resnetlab.infer.memory)")
        return "\n".join(lines)


def default_engines(device: torch.device) -> list[str]:
    """Candidates worth trying on ``device`` (bf16 only where it is native)."""
    bf16 = cpu_has_fast_bf16() if device.type == "cpu" else torch.cuda.is_bf16_supported()
    engines = ["eager", "compile"]
    if bf16:
        engines += ["eager-bf16", "compile-bf16"]
    if device.type == "cpu":  # int8 kernels and the other runtimes are CPU ones here
        engines += ["onnxruntime", "int8", "onnxruntime-int8", "openvino"]
        engines += ["openvino-bf16"] if bf16 else []
        engines.append("openvino-int8")
    return engines


def optimize_for_inference(
    model: nn.Module,
    example: Tensor,
    *,
    engines: Sequence[str] | None = None,
    min_seconds: float = 2.0,
    max_rel_error: float = 0.05,
    max_int8_error: float = 0.25,
    keep_memory: bool = True,
) -> FastModel:
    """Try each engine on ``example`` (the batch shape you will run) and keep the fastest
    whose outputs agree with the fp32 model (max relative error ≤ ``max_rel_error``; bf16
    engines differ by ~1e-2, fp32 ones by ~1e-6; int8 ones, calibrated on ``example``
    alone, are held to ``max_int8_error``). An engine that fails or whose package is
    missing is skipped with its one-line reason. Returns a :class:`FastModel`;
    ``.report()`` shows every measurement.

    ``keep_memory`` calls :func:`~resnetlab.infer.memory.keep_freed_memory` first (a
    process-wide glibc setting: large activations are reused instead of page-faulted in on
    every call; the process keeps its peak memory)."""
    kept = keep_freed_memory() if keep_memory else False
    device = example.device
    model = model.to(device).eval()
    with torch.no_grad():
        reference = model(example).float()
    prepared = prepare(model)
    results: list[EngineResult] = []
    skipped: dict[str, str] = {}
    runners: dict[str, Runner] = {}
    for engine in dict.fromkeys(engines or default_engines(device)):  # each timed once
        try:
            run = build_runner(engine, prepared, example)
            out = run(example)
            err = float((out - reference.cpu().to(out.device)).abs().max() / reference.abs().max())
            if err > (max_int8_error if engine in INT8_ENGINES else max_rel_error):
                skipped[engine] = f"outputs differ (max relative error {err:.2e})"
                continue
            secs = time_runner(run, example, min_seconds=min_seconds)
        except Exception as exc:  # an engine that cannot run here is skipped, not fatal
            skipped[engine] = first_line(exc)[:120]
            continue
        runners[engine] = run
        results.append(EngineResult(engine, secs, example.shape[0], err))
    if not results:
        raise NoEngineError(f"no inference engine could run: {skipped}")
    best = min(results, key=lambda r: r.seconds_per_batch)
    return FastModel(best.engine, runners[best.engine], results, skipped, memory_kept=kept)
