"""What every experiment shares: the :class:`Experiment` entry, the :class:`Request` it
answers, the jobs it may build, and the helpers its report uses.

An experiment is data, like a model: a name, its default depths, seeds and options, a
function from a request to the runs it needs (``jobs``) and one from those runs to a report
folder (``report``). Each experiment module declares one; :mod:`resnetlab.experiments.registry`
lists them.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnetlab.experiments.runs import (
    BUDGET_WARMUP,
    BUDGET_WEIGHT_DECAY,
    PAPER_ITERATIONS,
    Budget,
    RunRecord,
)
from resnetlab.models.registry import create_model, model_spec

Job = tuple[str, int, dict[str, Any]]  # model name, seed, model options


@dataclass
class Request:
    """One ``resnetlab reproduce`` call."""

    name: str
    budget: Budget
    out: Path
    depths: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    command: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # experiment-specific
    # Write the report from the runs already finished, training nothing (``--report-only``).
    report_only: bool = False
    # Jobs that had no finished run when ``report_only`` (filled by ``driver.run_all``).
    missing: list[str] = field(default_factory=list)
    # Runs of earlier reports (``--previous``): a job the store has not finished takes its
    # run from here instead of training it (experiments with ``summary_only`` only).
    earlier: list[RunRecord] = field(default_factory=list)

    @property
    def store(self) -> Path:
        return self.out / "runs"

    @property
    def report_dir(self) -> Path:
        return self.out / self.name


Jobs = Callable[[Request], list[Job]]
Reporter = Callable[[Request, list[RunRecord]], Path]


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """One registered experiment.

    ``source`` names what it reproduces ("Fig. 6", "Veit et al. 2016"); ``options`` are its
    own settings with their defaults (``--grid``, ``--draws``, …), read by the report;
    ``summary_only`` marks a report that can take runs from an earlier one.
    """

    name: str
    source: str
    depths: tuple[int, ...]
    jobs: Jobs
    report: Reporter
    seeds: tuple[int, ...] = (0,)
    options: dict[str, Any] = field(default_factory=dict)
    # The report reads only each run's summary (errors, wall time, hardware), not its curves
    # or weights, so runs of an earlier report can be folded in (``--previous``).
    summary_only: bool = False


# ---------------------------------------------------------------------- jobs
def by_importance(depths: list[int]) -> list[int]:
    """Shallowest, deepest, then the rest in order: an experiment cut short by its budget
    still has the most telling pair (depth 20 against 56) to compare."""
    if len(depths) <= 2:
        return list(depths)
    ordered = sorted(depths)
    return [ordered[0], ordered[-1], *ordered[1:-1]]


def plain_and_residual_jobs(depths: list[int], seeds: list[int]) -> list[Job]:
    """The plain net and the ResNet of every depth, for every seed."""
    return [
        (f"{kind}{d}", seed, {})
        for seed in seeds
        for d in by_importance(depths)
        for kind in ("plain", "resnet")
    ]


# ---------------------------------------------------------------------- report helpers
# One colour per depth, the same in every chart.
COLORS = {20: "#1f77b4", 32: "#2ca02c", 44: "#ff7f0e", 56: "#d62728", 110: "#9467bd"}


def depth(model: str) -> int:
    """The registered model's depth (weighted layers, counted as the paper does)."""
    return int(model_spec(model).depth)


def is_plain(model: str) -> bool:
    return not getattr(model_spec(model), "residual", True)


def label(model: str) -> str:
    """``plain-20``, ``ResNet-56``: the paper's names."""
    return f"{'plain' if is_plain(model) else 'ResNet'}-{depth(model)}"


def ordered(records: list[RunRecord]) -> list[RunRecord]:
    """Plain nets first, then ResNets, each by depth."""
    return sorted(records, key=lambda r: (not is_plain(r.model), depth(r.model)))


def params(model: str, **options: Any) -> int:
    """Parameters of ``model`` built with ``options`` (counted on the meta device)."""
    with torch.device("meta"):
        m = create_model(model, **options)
    return sum(p.numel() for p in m.parameters())


def by_model(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        out[r.model].append(r)
    return dict(out)


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def pm(values: list[float]) -> str:
    """``8.75``, or ``8.75 ± 0.12`` over several values; ``–`` for none."""
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "–"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def smooth(values: list[float], window: int) -> list[float]:
    """Running mean over the last ``window`` values."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


_SAME = (
    "the paper's architectures (option-A shortcuts), {batch}, 4-pixel padding with "
    "random 32×32 crops and flips, a validation split of 10% held out of the training "
    "images (45k/5k on CIFAR-10); each run's checkpoint is chosen on its validation "
    "split and its test error measured once, at the end"
)


def budget_note(req: Request, records: list[RunRecord]) -> str:
    """The protocol paragraph every report opens with: what was trained and how it differs
    from the paper, then the training speed of each model on this machine."""
    b = req.budget
    batch = "batch 128" if b.batch_size == 128 else f"batch {b.batch_size} (the paper: 128)"
    same = _SAME.format(batch=batch)
    if b.protocol == "budget":
        note = _budget_protocol(b, records, same)
    else:
        note = _step_protocol(b, records, same)
    changed = ", ".join(f"`{k}={v}`" for k, v in sorted(b.extra.items()))
    note += f" Changed for every run: {changed}." if changed else ""
    if req.missing:
        note += (
            f" **Not finished when this report was written, and left out of it:** "
            f"{', '.join(req.missing)}."
        )
    return note + " " + _speeds(records)


def _budget_protocol(b: Budget, records: list[RunRecord], same: str) -> str:
    steps = max((r.iterations for r in records), default=0)
    share = f" ({steps:,} iterations, {100 * steps / PAPER_ITERATIONS:.1f}% of the paper's 64k)"
    return (
        f"**Protocol: the CPU budget, not the paper's schedule.** Each net trains "
        f"{b.epochs} epoch{'s' * (b.epochs != 1)}{share if steps else ''} with a one-cycle "
        f"learning rate: a linear warm-up from 0 to {b.peak_lr} over the first "
        f"{BUDGET_WARMUP:.0%} of the steps, then a linear decay to 0. It differs from the "
        f"paper (§4.2) in the schedule (the paper: lr 0.1, divided by 10 at 32k and 48k "
        f"iterations, 64k in all), SGD with Nesterov momentum, weight decay "
        f"{BUDGET_WEIGHT_DECAY:g} instead of 1e-4, and {_precisions(records)} "
        f"arithmetic instead of fp32; unchanged: {same}. `--paper` runs the paper's "
        "schedule."
    )


def _step_protocol(b: Budget, records: list[RunRecord], same: str) -> str:
    epochs = max((int(r.results.get("epochs", 0)) for r in records), default=0)
    n = b.iterations
    which = (
        "**Protocol: the paper's schedule (§4.2).**"
        if b.is_paper
        else f"**Protocol: the paper's step schedule cut to {n:,} iterations "
        f"({100 * n / PAPER_ITERATIONS:.1f}% of its 64k).**"
    )
    # Runs read back from an older report may not know their epochs: then say none.
    span = f" ({epochs} epoch{'s' * (epochs != 1)})" if epochs else ""
    return (
        f"{which} {n:,} iterations{span}; learning "
        f"rate {b.peak_lr}, divided by 10 at {n // 2:,} and {3 * n // 4:,} iterations; SGD "
        f"momentum 0.9, weight decay 1e-4; {_precisions(records)} arithmetic; {same}."
    )


def _precisions(records: list[RunRecord]) -> str:
    found = sorted({str(r.results.get("precision", "?")) for r in records})
    return "/".join(found) or "?"


def _speeds(records: list[RunRecord]) -> str:
    """Training images/s per model (median over its runs' epochs), with the threads each ran
    on, and the CPU (per CPU where runs of an earlier report ran on another). Measured while
    training, beside whatever else the machine ran: a record of what happened, not a
    benchmark (``benchmarks/train_step.py`` is one)."""
    by_cpu: dict[str, dict[str, list[float]]] = {}
    threads: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if r.images_per_s:
            cpu = str(r.results.get("hardware", "?")).split(",")[0]
            by_cpu.setdefault(cpu, {}).setdefault(r.model, []).append(r.images_per_s)
            found = re.search(r"(\d+) threads?", str(r.results.get("hardware", "")))
            threads.setdefault((cpu, r.model), set()).add(found.group(1) if found else "?")
    # Models none of whose runs has a speed: runs of an earlier report that did not keep it.
    known = {m for speeds in by_cpu.values() for m in speeds}
    unknown = sorted({r.model for r in records} - known, key=lambda m: (depth(m), m))
    if not records:
        return ""
    groups = []
    for cpu, speeds in by_cpu.items():
        parts = ", ".join(
            f"{label(m)} {statistics.median(v):,.0f} ({'/'.join(sorted(threads[cpu, m]))} "
            f"thread{'s' * (threads[cpu, m] != {'1'})})"
            for m, v in sorted(speeds.items(), key=lambda kv: (depth(kv[0]), kv[0]))
        )
        groups.append(f"{parts}; CPU: {cpu}")
    if unknown:
        names = ", ".join(label(m) for m in unknown)
        earlier = all(r.earlier for r in records if r.model in unknown)
        why = " (by the earlier report its runs came from)" if earlier else ""
        groups.append(f"{names}: not recorded{why}")
    return (
        "Training speed (images/s, median over epochs; measured while training, beside "
        f"other work on the machine): {'. '.join(groups)}."
    )
