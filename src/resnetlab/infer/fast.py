"""Turning a trained model into its fastest inference form: every engine
(:mod:`~resnetlab.infer.engines`) built on the same prepared model
(:mod:`~resnetlab.infer.folding`: eval mode, BN folded, NHWC), checked against the fp32
model and timed.

:func:`optimize_for_inference` times the candidates on the batch size you care about and
returns the fastest, saying which it picked and what each measured. By default it also
keeps freed memory in the process (:mod:`resnetlab.infer.memory`): without that, glibc maps
and unmaps every activation over 32 MiB on each call.

An int8 engine changes the answers, not just their last digits, so it is picked only after
its top-1 was measured on real images (:class:`AccuracyCheck`: calibrated on them, then
held to within ``max_int8_drop`` points of the fp32 model); without real images it is timed
but not picked, and the report says why. What third-party packages print while an engine
is built (NNCF's "Dataset contains only 1 samples", ONNX exporter warnings) is kept out of
the table; the report counts the hidden lines.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from resnetlab.errors import NoEngineError, first_line
from resnetlab.infer.engines import INT8_ENGINES, Runner, build_runner
from resnetlab.infer.folding import prepare
from resnetlab.infer.memory import keep_freed_memory
from resnetlab.runtime.execution import cpu_has_fast_bf16

if TYPE_CHECKING:
    from resnetlab.infer.predict import Predictor


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


@dataclass(frozen=True)
class AccuracyCheck:
    """Real images (normalised, ``(N, C, H, W)``) and their labels, to measure an int8
    engine's top-1 against the fp32 model's before it may be picked."""

    images: Tensor
    labels: Tensor
    source: str  # in words, for the report: "256 val images of DIR"


@dataclass
class EngineResult:
    engine: str
    seconds_per_batch: float
    batch_size: int
    max_rel_error: float  # against the unfolded fp32 eager model, on the timing batch
    top1: float | None = None  # % on the AccuracyCheck's images, where measured

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
    check: AccuracyCheck | None = None
    held: dict[str, str] = field(default_factory=dict)  # timed but not picked, and why
    check_line: str = ""  # what the int8 engines were checked on, or why they were not
    hidden: int = 0  # third-party lines kept out of the report

    def __call__(self, x: Tensor) -> Tensor:
        return self.run(x)

    def report(self) -> str:
        width = max([len("engine"), *(len(e) for e in (*self.names(), *self.skipped))])
        head = f"{'engine':<{width}} {'images/s':>10} {'ms/batch':>10} {'max rel err':>12}"
        lines = [head + (f" {'top-1 %':>8}" if self.check else "")]
        for r in sorted(self.results, key=lambda r: r.seconds_per_batch):
            mark = "  ← picked" if r.engine == self.engine else ""
            ms = 1000 * r.seconds_per_batch
            row = (
                f"{r.engine:<{width}} {r.images_per_s:>10.1f} {ms:>10.1f} {r.max_rel_error:>12.2e}"
            )
            if self.check:
                row += f" {r.top1:>8.2f}" if r.top1 is not None else f" {'':>8}"
            lines.append(
                row + mark + (f"  ({self.held[r.engine]})" if r.engine in self.held else "")
            )
        lines += [f"{e:<{width}} skipped: {why}" for e, why in self.skipped.items()]
        lines.append(self.check_line)
        if self.hidden:
            lines.append(f"({self.hidden} lines of third-party output hidden while engines built)")
        if self.memory_kept:
            lines.append("(freed memory kept in the process: see resnetlab.infer.memory)")
        return "\n".join(line for line in lines if line)

    def names(self) -> list[str]:
        return [r.engine for r in self.results]


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


@contextlib.contextmanager
def _quiet(counter: list[int]) -> Iterator[None]:
    """Keep what third-party packages print while an engine builds out of the report
    (their warnings, log lines and prints); count the lines."""
    out, err = io.StringIO(), io.StringIO()
    loud = [logging.getLogger(n) for n in ("nncf", "openvino", "onnxruntime", "torch.onnx")]
    levels = [lg.level for lg in loud]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for lg in loud:
            lg.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                yield
        finally:
            for lg, level in zip(loud, levels, strict=True):
                lg.setLevel(level)
    counter[0] += len(caught) + len((out.getvalue() + err.getvalue()).splitlines())


def _top1(run: Runner, check: AccuracyCheck, batch: int) -> float:
    """Top-1 % of ``run`` on the check images, in batches of the timed shape (the last one
    filled up with the first images, whose answers are dropped)."""
    n, right = len(check.images), 0
    for start in range(0, n, batch):
        x = check.images[start : start + batch]
        short = batch - len(x)
        if short:
            x = torch.cat([x, check.images[:short].expand(short, *x.shape[1:])])
        pred = run(x).float().argmax(dim=1)[: batch - short].cpu()
        right += int((pred == check.labels[start : start + batch]).sum())
    return 100.0 * right / n


def val_check(p: Predictor, side: int, limit: int = 256) -> tuple[AccuracyCheck | None, str]:
    """Real images to check int8 engines on: up to ``limit`` of the data's val split (never
    test: bench chooses an engine), or why there are none."""
    from resnetlab.errors import ResnetlabError

    if side != p.preprocess.image_size:
        return None, f"--image-size {side} is not the model's input ({p.preprocess.image_size})"
    try:
        data = p.split("val")
    except ResnetlabError as err:
        return None, f"no val images ({err})"
    xs, ys, n = [], [], 0
    for x, y in data.eval_batches(p.preprocess, batch_size=64, device=torch.device("cpu")):
        xs.append(x.float())
        ys.append(y)
        n += len(x)
        if n >= limit:
            break
    images, labels = torch.cat(xs)[:limit], torch.cat(ys)[:limit]
    source = f"{len(images)} val images of {p.config.data.source}"
    return AccuracyCheck(images, labels, source), ""


def optimize_for_inference(
    model: nn.Module,
    example: Tensor,
    *,
    engines: Sequence[str] | None = None,
    min_seconds: float = 2.0,
    max_rel_error: float = 0.05,
    max_int8_error: float = 0.25,
    keep_memory: bool = True,
    check: AccuracyCheck | None = None,
    max_int8_drop: float = 1.0,
) -> FastModel:
    """Try each engine on ``example`` (the batch shape you will run) and keep the fastest
    whose outputs agree with the fp32 model (max relative error ≤ ``max_rel_error``; bf16
    engines differ by ~1e-2, fp32 ones by ~1e-6; int8 ones are held to
    ``max_int8_error``). An int8 engine is picked only when ``check`` is given and its top-1
    on those real images is within ``max_int8_drop`` points of the fp32 model's (it is then
    calibrated on real images: the first batch of ``check``, which is also what is timed).
    An engine that fails or whose package is missing is skipped with its one-line reason.
    Returns a :class:`FastModel`; ``.report()`` shows every measurement.

    ``keep_memory`` calls :func:`~resnetlab.infer.memory.keep_freed_memory` first (a
    process-wide glibc setting: large activations are reused instead of page-faulted in on
    every call; the process keeps its peak memory)."""
    kept = keep_freed_memory() if keep_memory else False
    device = example.device
    if check is not None:  # time (and calibrate int8) on real images of the same shape
        reps = -(-example.shape[0] // len(check.images))
        example = check.images.repeat(reps, 1, 1, 1)[: example.shape[0]].to(device)
    model = model.to(device).eval()
    with torch.no_grad():
        reference = model(example).float()
    prepared = prepare(model)
    fast = FastModel("", eager_placeholder, check=check, memory_kept=kept)
    runners: dict[str, Runner] = {}
    hidden = [0]
    for engine in dict.fromkeys(engines or default_engines(device)):  # each timed once
        try:
            with _quiet(hidden):
                run = build_runner(engine, prepared, example)
                out = run(example)
            err = float((out - reference.cpu().to(out.device)).abs().max() / reference.abs().max())
            if err > (max_int8_error if engine in INT8_ENGINES else max_rel_error):
                fast.skipped[engine] = f"outputs differ (max relative error {err:.2e})"
                continue
            secs = time_runner(run, example, min_seconds=min_seconds)
        except Exception as exc:  # an engine that cannot run here is skipped, not fatal
            fast.skipped[engine] = first_line(exc)[:120]
            continue
        runners[engine] = run
        fast.results.append(EngineResult(engine, secs, example.shape[0], err))
    fast.hidden = hidden[0]
    _check_int8(fast, runners, model, example.shape[0], max_int8_drop)
    if not fast.results:
        raise NoEngineError(f"no inference engine could run: {fast.skipped}")
    eligible = [r for r in fast.results if r.engine not in fast.held] or fast.results
    best = min(eligible, key=lambda r: r.seconds_per_batch)
    fast.engine, fast.run = best.engine, runners[best.engine]
    return fast


def eager_placeholder(x: Tensor) -> Tensor:
    """The runner of a :class:`FastModel` before one is picked."""
    raise RuntimeError("resnetlab bug: no engine picked yet")


def _check_int8(
    fast: FastModel, runners: dict[str, Runner], model: nn.Module, batch: int, drop: float
) -> None:
    """Measure each timed int8 engine's top-1 on the real images, or hold it back."""
    int8 = [r for r in fast.results if r.engine in INT8_ENGINES]
    check = fast.check
    if check is None:
        for r in int8:
            fast.held[r.engine] = "not picked: accuracy not checked on real images"
        if int8:
            fast.check_line = (
                "int8 engines were not checked on real images (none given), so none is picked"
            )
        return
    with torch.no_grad():
        ref = _top1(model, check, batch)
    for r in fast.results:
        if r.engine in INT8_ENGINES or r.engine == "eager":
            r.top1 = _top1(runners[r.engine], check, batch)
    for r in int8:
        assert r.top1 is not None
        if r.top1 < ref - drop:
            fast.held[r.engine] = f"not picked: top-1 {r.top1:.2f}% vs fp32 {ref:.2f}%"
    fast.check_line = (
        f"int8 engines checked on {check.source}: fp32 top-1 {ref:.2f}%; an int8 engine is "
        f"picked only within {drop:g} point(s) of it"
    )
