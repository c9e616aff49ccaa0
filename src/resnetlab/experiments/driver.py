"""Run an experiment: its jobs from the store, then its report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from resnetlab.experiments import jobs as J
from resnetlab.experiments.runs import Budget, Log, RunRecord, finished_run, run_job
from resnetlab.fileio import check_folder
from resnetlab.models.registry import list_models

DEFAULT_DEPTHS = {
    "degradation": [20, 32, 44, 56],
    "cifar-table": [20, 32, 44, 56, 110],
    "responses": [20, 56],
    "shortcuts": [20],
    "landscape": [20, 56],
    "lesion": [56],
}
DEFAULT_SEEDS = {"cifar-table": [0, 1]}  # one seed (0) for the others


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
    # Jobs that had no finished run when ``report_only`` (filled by :func:`run_all`).
    missing: list[str] = field(default_factory=list)

    @property
    def store(self) -> Path:
        return self.out / "runs"

    @property
    def report_dir(self) -> Path:
        return self.out / self.name


def training_jobs(req: Request) -> list[J.Job]:
    if req.name == "degradation":
        return J.degradation_jobs(req.depths, req.seeds)
    if req.name == "cifar-table":
        return J.cifar_table_jobs(req.depths, req.seeds)
    if req.name in ("responses", "landscape"):
        return J.responses_jobs(req.depths, req.seeds)
    if req.name == "lesion":
        return J.responses_jobs(req.depths[:1], req.seeds)
    if req.name == "shortcuts":
        return J.shortcut_jobs(req.depths[0], req.seeds)
    raise ValueError(f"{req.name} trains nothing")


def run_all(req: Request, log: Log) -> tuple[list[RunRecord], float]:
    """Every job of ``req`` (read, resumed or trained); the seconds this call took."""
    start = time.monotonic()
    records = []
    for model, seed, options in training_jobs(req):
        if not req.report_only:
            records.append(
                run_job(req.budget, model, seed, req.store, log=log, command=req.command, **options)
            )
            continue
        done = finished_run(req.budget, model, seed, req.store, **options)
        if done is None:
            label = model + "".join(f" ({k}={v})" for k, v in sorted(options.items()))
            req.missing.append(f"{label} seed {seed}")
        else:
            records.append(done)
    if req.report_only and not records:
        raise ValueError(f"no finished runs for {req.name} in {req.store}: nothing to report")
    if req.missing:
        log(f"not finished, left out of the report: {', '.join(req.missing)}")
    return records, time.monotonic() - start


Reporter = Callable[[Request, list[RunRecord], Log], Path]


# Landscape grids are centred on the trained weights: an odd number of points puts one at
# α = β = 0 ("loss at θ" in the report); 51 points per axis are 2,601 evaluations.
MAX_GRID = 51


def _depths(req: Request, known: set[str]) -> list[int]:
    """The depths whose models ``req``'s experiment trains are all registered."""
    return [
        d
        for d in range(8, 1203, 6)
        if all(m in known for m, _, _ in training_jobs(replace(req, depths=[d])))
    ]


def check_request(req: Request) -> None:
    """One-line errors for a request that cannot be what was meant, before any work: the
    output folder, depths the CIFAR nets do not have, a seed given twice (it counted one run
    twice in every mean), and a landscape grid without its centre (or asked of another
    experiment, which ignored it)."""
    check_folder(req.out)
    known = set(list_models())
    for d in req.depths:
        if not all(m in known for m, _, _ in training_jobs(replace(req, depths=[d]))):
            raise ValueError(
                f"depth {d} is not one {req.name} can train: CIFAR depths are 6n+2 (three "
                "stages of n two-layer blocks, the first convolution and the classifier), "
                f"and the registered ones are {', '.join(map(str, _depths(req, known)))}"
            )
    for values, what in ((req.depths, "--depths"), (req.seeds, "--seeds")):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(
                f"{what} lists {repeated[0]} more than once; each is one run, and a repeat "
                "would count that run twice"
            )
    grid = req.options.get("grid")
    if grid is not None and req.name != "landscape":
        raise ValueError(f"--grid is the landscape's; {req.name} has no grid")
    if grid is not None and not (3 <= grid <= MAX_GRID and grid % 2):
        raise ValueError(
            f"--grid must be an odd number of points from 3 to {MAX_GRID}, so that one point "
            f"is the trained weights (α = β = 0); got {grid}"
        )


def reproduce(req: Request, log: Log = print) -> Path:
    """Train what ``req`` needs (resuming anything interrupted) and write its report."""
    check_request(req)
    records, seconds = run_all(req, log)
    log(f"{len(records)} runs ready ({seconds:.0f} s in this call)")
    from resnetlab.experiments.reports import REPORTERS
    from resnetlab.experiments.studies import landscape_report, lesion_report

    REPORTERS.update({"landscape": landscape_report, "lesion": lesion_report})

    return REPORTERS[req.name](req, records, log)
