"""Degradation (He et al. 2015, Fig. 6): plain nets train worse as they get deeper, ResNets
better. Every depth is trained as a plain net and as its residual twin."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from resnetlab.experiments.base import (
    COLORS,
    Experiment,
    Job,
    Request,
    budget_note,
    by_model,
    depth,
    label,
    mean,
    params,
    plain_and_residual_jobs,
    pm,
    smooth,
)
from resnetlab.experiments.report import Cell, Report, Table, provenance
from resnetlab.experiments.runs import RunRecord
from resnetlab.fileio import pyplot


def jobs(req: Request) -> list[Job]:
    return plain_and_residual_jobs(req.depths, req.seeds)


def report(req: Request, records: list[RunRecord]) -> Path:
    out = Report(
        "Degradation: plain vs residual networks on CIFAR-10 (paper Fig. 6)", req.report_dir
    )
    groups = by_model(records)
    rows: list[list[Cell]] = []
    numbers: dict[str, Any] = {}
    for model in sorted(groups, key=lambda m: (m.startswith("resnet"), depth(m))):
        runs = groups[model]
        train = [r.final_train_error() for r in runs]
        val = [r.best_val_error for r in runs]
        test = [r.test_error for r in runs]
        numbers[model] = {
            "params": params(model),
            "train_error": train,
            "best_val_error": val,
            "test_error": test,
        }
        rows.append([label(model), numbers[model]["params"], pm(train), pm(val), pm(test)])
    out.para(budget_note(req, records))
    out.heading("What it shows")
    out.para(findings(numbers))
    out.heading("Training and validation error against iterations")
    out.figure(
        _chart(groups),
        "degradation",
        "Dashed: training error (mean over each 25 iterations, smoothed); solid: "
        "validation error at each epoch's end. Left plain, right residual.",
    )
    out.table(
        Table(
            ["model", "params", "training error (%)", "best val error (%)", "test error (%)"],
            rows,
            caption="Training error: mean over the last 10% of iterations (with "
            "augmentation, as the paper's curves). Mean ± std over seeds when "
            "there are several.",
        )
    )
    out.numbers["models"] = numbers
    provenance(out, records, req.command)
    return out.write()


def _extremes(numbers: dict[str, Any], kind: str) -> tuple[str, str] | None:
    models = sorted((m for m in numbers if m.startswith(kind)), key=depth)
    return (models[0], models[-1]) if len(models) >= 2 else None


def findings(numbers: dict[str, Any]) -> str:
    """What the numbers show, against the paper: plain nets worse with depth, ResNets better."""
    lines = []
    for kind, want in (("plain", "higher"), ("resnet", "lower")):
        pair = _extremes(numbers, kind)
        if pair is None:
            continue
        shallow, deep = pair
        a = mean(numbers[shallow]["train_error"])
        b = mean(numbers[deep]["train_error"])
        ta, tb = mean(numbers[shallow]["test_error"]), mean(numbers[deep]["test_error"])
        shown = b > a if want == "higher" else b < a
        verdict = "as in the paper" if shown else "NOT as in the paper at this budget"
        lines.append(
            f"- {label(deep)} ends at {b:.2f}% training error against {label(shallow)}'s "
            f"{a:.2f}% ({'higher' if b > a else 'lower'}: {verdict}); test error "
            f"{tb:.2f}% against {ta:.2f}%."
        )
    plain = sorted((m for m in numbers if m.startswith("plain")), key=depth)
    if len(plain) >= 3:
        errors = [mean(numbers[m]["train_error"]) for m in plain]
        rising = all(x < y for x, y in itertools.pairwise(errors))
        lines.append(
            "- Plain nets, training error by depth: "
            + ", ".join(f"{label(m)} {e:.2f}%" for m, e in zip(plain, errors, strict=True))
            + (
                " — it rises with every step in depth."
                if rising
                else " — not strictly rising with depth at this budget."
            )
        )
    return "\n".join(lines) if lines else "Too few depths to compare."


def _chart(groups: dict[str, list[RunRecord]]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    top = 5.0
    for ax, kind in zip(axes, ("plain", "resnet"), strict=True):
        for model in sorted((m for m in groups if m.startswith(kind)), key=depth):
            run = groups[model][0]  # the first seed draws the curve
            color = COLORS.get(depth(model))
            if run.steps:
                xs = [s["step"] for s in run.steps]
                ys = smooth([100 * s["train_error"] for s in run.steps], 4)
                ax.plot(xs, ys, "--", color=color, linewidth=1)
                top = max(top, max(ys[len(ys) // 4 :], default=top))
            xs = [float(e["step"]) for e in run.epochs]
            ys = [100 - float(e["val_top1"]) for e in run.epochs]
            ax.plot(
                xs, ys, "-", color=color, linewidth=2, marker="o", markersize=3, label=label(model)
            )
        ax.set_title("plain networks" if kind == "plain" else "ResNets")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, min(100, top * 1.15))
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="degradation", source="Fig. 6", depths=(20, 32, 44, 56), jobs=jobs, report=report
)
