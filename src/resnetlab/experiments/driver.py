"""Run an experiment: its jobs from the store, then its report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnetlab.errors import InvalidValueError
from resnetlab.experiments import jobs as J
from resnetlab.experiments.runs import Budget, Log, RunRecord, finished_run, run_job

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
    raise InvalidValueError(f"{req.name} trains nothing")


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
        raise InvalidValueError(
            f"no finished runs for {req.name} in {req.store}: nothing to report"
        )
    if req.missing:
        log(f"not finished, left out of the report: {', '.join(req.missing)}")
    return records, time.monotonic() - start


Reporter = Callable[[Request, list[RunRecord], Log], Path]


def reproduce(req: Request, log: Log = print) -> Path:
    """Train what ``req`` needs (resuming anything interrupted) and write its report."""
    records, seconds = run_all(req, log)
    log(f"{len(records)} runs ready ({seconds:.0f} s in this call)")
    from resnetlab.experiments.reports import REPORTERS
    from resnetlab.experiments.studies import landscape_report, lesion_report

    REPORTERS.update({"landscape": landscape_report, "lesion": lesion_report})

    return REPORTERS[req.name](req, records, log)
