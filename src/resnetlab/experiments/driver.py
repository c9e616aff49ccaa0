"""Run an experiment: its jobs from the store, then its report."""

from __future__ import annotations

import time
from pathlib import Path

from resnetlab.errors import InvalidValueError
from resnetlab.experiments.base import Request
from resnetlab.experiments.registry import get_experiment
from resnetlab.experiments.runs import Log, RunRecord, finished_run, run_job


def run_all(req: Request, log: Log) -> tuple[list[RunRecord], float]:
    """Every job of ``req`` (read, resumed or trained); the seconds this call took."""
    start = time.monotonic()
    records = []
    for model, seed, options in get_experiment(req.name).jobs(req):
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


def reproduce(req: Request, log: Log = print) -> Path:
    """Train what ``req`` needs (resuming anything interrupted) and write its report."""
    records, seconds = run_all(req, log)
    log(f"{len(records)} runs ready ({seconds:.0f} s in this call)")
    return get_experiment(req.name).report(req, records, log)
