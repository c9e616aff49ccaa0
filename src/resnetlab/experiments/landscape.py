"""Loss landscapes of plain and residual networks (Li et al. 2018), on the user's own trained
models: the training loss around each model's weights along filter-normalised random
directions (:mod:`resnetlab.experiments.loss_surface` computes the grids)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from resnetlab.experiments import loss_surface as L
from resnetlab.experiments.base import (
    COLORS,
    Experiment,
    Job,
    Request,
    budget_note,
    depth,
    label,
    ordered,
    plain_and_residual_jobs,
)
from resnetlab.experiments.report import Cell, Report, Table, provenance
from resnetlab.experiments.runs import RunRecord
from resnetlab.experiments.trained import Trained
from resnetlab.fileio import pyplot
from resnetlab.runtime.evaluate import evaluate
from resnetlab.runtime.execution import Execution, choose

log = logging.getLogger(__name__)


def jobs(req: Request) -> list[Job]:
    return plain_and_residual_jobs(req.depths, req.seeds[:1])


# ---------------------------------------------------------------------- computation
def grid_of(
    record: RunRecord,
    req: Request,
    place: Execution,
    *,
    points: int,
    span: float,
    images: int,
) -> L.Grid:
    """The grid of one trained run, resumed from (and saved to) ``<model>.npz`` in the
    report folder, with ``<model>.csv`` beside it."""
    trained = Trained.load(record)
    batches = trained.batches(trained.train, images, seed=0, place=place)
    save_to = req.report_dir / f"{record.model}.npz"
    left = L.Grid.load(save_to, points, span)
    evals = int(np.isnan(left.loss1d).sum() + np.isnan(left.loss2d).sum())
    t0 = time.monotonic()
    evaluate(trained.model, batches, place=place)
    per_eval = time.monotonic() - t0
    log.info(
        f"{record.model}: {evals} evaluations to go, of {images:,} training images, about "
        f"{evals * per_eval / 60:.1f} min ({per_eval:.2f} s each, {place.precision})"
    )
    req.report_dir.mkdir(parents=True, exist_ok=True)
    grid = L.surface(
        trained.model,
        batches,
        place,
        points=points,
        span=span,
        seed=record.seed,
        save_to=save_to,
    )
    grid.write_csv(req.report_dir / f"{record.model}.csv")
    return grid


# ---------------------------------------------------------------------- report
def report(req: Request, records: list[RunRecord]) -> Path:
    points = int(req.options.get("grid", 13))
    span = float(req.options.get("span", 1.0))
    images = int(req.options.get("images", 1000))
    place = choose(req.budget.device, req.budget.precision)
    out = Report("Loss landscapes of plain and residual networks (Li et al. 2018)", req.report_dir)
    grids = {
        r.model: grid_of(r, req, place, points=points, span=span, images=images)
        for r in ordered(records)
    }
    seconds = sum(g.seconds for g in grids.values())
    out.para(budget_note(req, records))
    out.para(
        f"Each model's training loss on {images:,} training images (a fixed random subset, no "
        f"augmentation, {place.precision}) at θ + αδ (1-D) and θ + αδ + βη (2-D), α, β in "
        f"[−{span}, {span}] on a {points}×{points} grid. δ and η are Gaussian directions, "
        "filter-normalised (each filter rescaled to the norm of the same filter of θ); "
        "biases and BN parameters are not moved and BN uses its trained running statistics "
        "(the authors' `--xignore biasbn`, evaluation mode). "
        + (
            f"Evaluating the grids took {seconds / 60:.1f} min."
            if all(g.seconds > 0 for g in grids.values())
            else "(Some grids were read back from files that do not record their time.)"
        )
    )
    out.heading("What it shows")
    out.para(findings(grids))
    _figures(out, grids)
    out.table(_table(grids))
    out.para(
        "Raw grids: `<model>.npz` (coords, loss1d, acc1d, loss2d, acc2d) and "
        "`<model>.csv` in this folder."
    )
    out.numbers["grids"] = {m: _numbers(g) for m, g in grids.items()}
    out.numbers["settings"] = {
        "grid": points,
        "span": span,
        "images": images,
        "precision": place.precision,
        "seconds": seconds,
    }
    provenance(out, records, req.command)
    return out.write()


def _numbers(g: L.Grid) -> dict[str, Any]:
    return {
        "coords": g.coords.tolist(),
        "loss1d": g.loss1d.tolist(),
        "acc1d": g.acc1d.tolist(),
        "loss2d": g.loss2d.tolist(),
        "local_minima": L.local_minima(g.loss2d),
    }


def _table(grids: dict[str, L.Grid]) -> Table:
    rows: list[list[Cell]] = []
    for model, g in grids.items():
        c = len(g.coords) // 2
        inner = L.inner(g)
        rows.append(
            [
                label(model),
                float(g.loss2d[c, c]),
                float(g.acc2d[c, c]),
                float(np.median(g.loss2d)),
                float(inner.mean()),
                float(inner.max()),
                L.local_minima(g.loss2d),
            ]
        )
    header = ["model", "loss at θ", "accuracy at θ (%)", "median loss on grid"]
    return Table(
        [*header, "inner mean loss", "inner max loss", "local minima"],
        rows,
        caption="Inner: the points with |α|, |β| ≤ half the span. Local "
        "minima: interior grid points below all eight neighbours (1 for a "
        "single basin). Losses far from θ reach the thousands in deep nets, "
        "so medians and the inner region describe the shape better than "
        "means.",
    )


def findings(grids: dict[str, L.Grid]) -> str:
    """Plain against ResNet at each depth; whether the deep plain net's surface is the
    sharpest, as Li et al. report."""
    lines = []
    for d in sorted({depth(m) for m in grids}):
        p, r = grids.get(f"plain{d}"), grids.get(f"resnet{d}")
        if p is None or r is None:
            continue
        lines.append(
            f"- depth {d}: median grid loss plain {np.median(p.loss2d):.2f} vs ResNet "
            f"{np.median(r.loss2d):.2f}; highest loss in the inner region plain "
            f"{L.inner(p).max():.2f} vs ResNet {L.inner(r).max():.2f}; local minima plain "
            f"{L.local_minima(p.loss2d)} vs ResNet {L.local_minima(r.loss2d)}."
        )
    plains = sorted((m for m in grids if m.startswith("plain")), key=depth)
    deep = plains[-1] if plains else ""
    twin = deep.replace("plain", "resnet")
    if len(plains) >= 2 and twin in grids:
        a, b = (float(np.median(grids[m].loss2d)) for m in (plains[0], deep))
        c = float(np.median(grids[twin].loss2d))
        shown = b > a and b > c
        lines.append(
            f"- Li et al.: without shortcuts the surface turns sharp as the net gets deeper, "
            f"and shortcuts keep it smooth. Here the median loss around {label(deep)} is "
            f"{b:.2f}, against {a:.2f} around {label(plains[0])} and {c:.2f} around "
            f"{label(twin)}: " + ("as they report." if shown else "NOT as they report.")
        )
    return "\n".join(lines) or "No plain/residual pair to compare."


# ---------------------------------------------------------------------- charts
def _figures(out: Report, grids: dict[str, L.Grid]) -> None:
    out.figure(
        _contours(grids),
        "landscape-contours",
        "2-D training-loss contours (log-spaced levels), one panel per model.",
    )
    out.figure(_surfaces(grids), "landscape-surfaces", "The same losses as 3-D surfaces.")
    out.figure(
        _curves(grids), "landscape-1d", "1-D: training loss (left) and accuracy (right) along δ."
    )


def _panels(n: int, three_d: bool = False) -> tuple[Any, list[Any]]:
    plt = pyplot()
    kw = {"subplot_kw": {"projection": "3d"}} if three_d else {}
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4), squeeze=False, **kw)
    return fig, list(axes[0])


def _contours(grids: dict[str, L.Grid]) -> Any:
    fig, axes = _panels(len(grids))
    for ax, (model, g) in zip(axes, grids.items(), strict=True):
        z = np.log10(np.clip(g.loss2d.T, 1e-6, None))  # rows: β
        cs = ax.contour(g.coords, g.coords, z, levels=20, cmap="viridis", linewidths=0.8)
        ax.clabel(cs, inline=True, fontsize=6, fmt=lambda v: f"{10**v:.2g}")
        ax.plot(0, 0, "k+")
        ax.set_title(label(model))
        ax.set_xlabel("α (δ)")
        ax.set_ylabel("β (η)")
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def _surfaces(grids: dict[str, L.Grid]) -> Any:
    fig, axes = _panels(len(grids), three_d=True)
    for ax, (model, g) in zip(axes, grids.items(), strict=True):
        a, b = np.meshgrid(g.coords, g.coords, indexing="ij")
        z = np.minimum(g.loss2d, 10.0)
        ax.plot_surface(a, b, z, cmap="viridis", linewidth=0, antialiased=True)
        ax.set_title(label(model))
        ax.set_xlabel("α")
        ax.set_ylabel("β")
        ax.set_zlabel("loss (clipped at 10)")
    fig.tight_layout()
    return fig


def _curves(grids: dict[str, L.Grid]) -> Any:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for model, g in grids.items():
        style = "--" if model.startswith("plain") else "-"
        color = COLORS.get(depth(model))
        left.plot(g.coords, g.loss1d, style, color=color, label=label(model))
        right.plot(g.coords, g.acc1d, style, color=color, label=label(model))
    left.set_ylabel("training loss")
    left.set_yscale("log")
    right.set_ylabel("training accuracy (%)")
    for ax in (left, right):
        ax.set_xlabel("α")
        ax.grid(alpha=0.3)
    left.legend()
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="landscape",
    source="Li et al. 2018",
    depths=(20, 56),
    jobs=jobs,
    report=report,
    options={"grid": 13, "span": 1.0, "images": 1000},
)
