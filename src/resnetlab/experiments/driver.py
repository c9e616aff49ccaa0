"""Run an experiment: its jobs from the store, then its report."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from resnetlab.errors import InvalidValueError
from resnetlab.experiments.base import Request
from resnetlab.experiments.registry import experiments, get_experiment
from resnetlab.experiments.runs import RunRecord, finished_run, run_job
from resnetlab.fileio import check_folder
from resnetlab.models.registry import list_models

log = logging.getLogger(__name__)


def run_all(req: Request) -> tuple[list[RunRecord], float]:
    """Every job of ``req`` (read, resumed or trained); the seconds this call took."""
    start = time.monotonic()
    records = []
    for model, seed, options in get_experiment(req.name).jobs(req):
        earlier = _earlier_run(req, model, seed, options)
        if earlier is not None:
            records.append(earlier)
            continue
        if not req.report_only:
            records.append(
                run_job(req.budget, model, seed, req.store, command=req.command, **options)
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
        log.info(f"not finished, left out of the report: {', '.join(req.missing)}")
    return records, time.monotonic() - start


def _earlier_run(req: Request, model: str, seed: int, options: dict[str, Any]) -> RunRecord | None:
    """The job's run from an earlier report, when the store has not finished one (a run of
    the store wins: it has its curves and weights)."""
    found = [r for r in req.earlier if (r.model, r.seed, r.options) == (model, seed, options)]
    if not found or finished_run(req.budget, model, seed, req.store, **options) is not None:
        return None
    return found[-1]  # the latest report given wins


# Landscape grids are centred on the trained weights: an odd number of points puts one at
# α = β = 0 ("loss at θ" in the report); 51 points per axis are 2,601 evaluations.
MAX_GRID = 51


def _depths(req: Request, known: set[str]) -> list[int]:
    """The depths whose models ``req``'s experiment trains are all registered."""
    return [
        d
        for d in range(8, 1203, 6)
        if all(m in known for m, _, _ in get_experiment(req.name).jobs(replace(req, depths=[d])))
    ]


def check_request(req: Request) -> None:
    """One-line errors for a request that cannot be what was meant, before any work: the
    output folder, depths the CIFAR nets do not have, a seed given twice (it counted one run
    twice in every mean), and a landscape grid without its centre (or asked of another
    experiment, which ignored it)."""
    check_folder(req.out)
    known = set(list_models())
    for d in req.depths:
        if not all(
            m in known for m, _, _ in get_experiment(req.name).jobs(replace(req, depths=[d]))
        ):
            raise InvalidValueError(
                f"depth {d} is not one {req.name} can train: CIFAR depths are 6n+2 (three "
                "stages of n two-layer blocks, the first convolution and the classifier), "
                f"and the registered ones are {', '.join(map(str, _depths(req, known)))}"
            )
    for values, what in ((req.depths, "--depths"), (req.seeds, "--seeds")):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise InvalidValueError(
                f"{what} lists {repeated[0]} more than once; each is one run, and a repeat "
                "would count that run twice"
            )
    if req.earlier and not get_experiment(req.name).summary_only:
        raise InvalidValueError(
            f"--previous: {req.name}'s report reads each run's curves or weights, which an "
            "earlier report does not keep; only "
            + ", ".join(e.name for e in experiments() if e.summary_only)
            + " can take runs from one"
        )
    grid = req.options.get("grid")
    if grid is not None and req.name != "landscape":
        raise InvalidValueError(f"--grid is the landscape's; {req.name} has no grid")
    if grid is not None and not (3 <= grid <= MAX_GRID and grid % 2):
        raise InvalidValueError(
            f"--grid must be an odd number of points from 3 to {MAX_GRID}, so that one point "
            f"is the trained weights (α = β = 0); got {grid}"
        )


def reproduce(req: Request) -> Path:
    """Train what ``req`` needs (resuming anything interrupted) and write its report."""
    check_request(req)
    records, seconds = run_all(req)
    log.info(f"{len(records)} runs ready ({seconds:.0f} s in this call)")
    return get_experiment(req.name).report(req, records)
