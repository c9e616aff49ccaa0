"""CIFAR-10 test error of the ResNets by depth (He et al. 2015, Table 6), beside the paper's
numbers; the best seed is chosen on validation error, never on the test split."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

from resnetlab.experiments.base import (
    Experiment,
    Job,
    Request,
    budget_note,
    by_importance,
    by_model,
    depth,
    mean,
    params,
    pm,
)
from resnetlab.experiments.report import Cell, Report, Table, provenance
from resnetlab.experiments.runs import RunRecord
from resnetlab.fileio import pyplot

# He et al. 2015, Table 6: CIFAR-10 test error (%) and parameters; ResNet-110: best (mean±std).
PAPER_TABLE6 = {
    20: (0.27, "8.75"),
    32: (0.46, "7.51"),
    44: (0.66, "7.17"),
    56: (0.85, "6.97"),
    110: (1.7, "6.43 (6.61±0.16)"),
    1202: (19.4, "7.93"),
}


def jobs(req: Request) -> list[Job]:
    return [(f"resnet{d}", seed, {}) for seed in req.seeds for d in by_importance(req.depths)]


def _entry(model: str, runs: list[RunRecord]) -> tuple[list[Cell], dict[str, Any]]:
    """The table row of one model and its numbers for results.json."""
    d = depth(model)
    # "best" is chosen on validation error, never on the test split.
    chosen = min(runs, key=lambda r: r.best_val_error)
    test = [r.test_error for r in runs]
    paper = PAPER_TABLE6.get(d, (float("nan"), "–"))
    mean_std = f" ({pm(test)})" if len(test) > 1 else ""
    n_params = params(model)
    row: list[Cell] = [
        f"ResNet-{d}",
        f"{n_params / 1e6:.2f}M",
        paper[1],
        f"{chosen.test_error:.2f}{mean_std}",
        len(runs),
        ", ".join(f"{t:.2f}" for t in test),
    ]
    numbers = {
        "params": n_params,
        "test_error": test,
        "seeds": [r.seed for r in runs],
        "chosen_seed": chosen.seed,
        "chosen_test_error": chosen.test_error,
        "best_val_error": [r.best_val_error for r in runs],
        "paper": paper[1],
    }
    return row, numbers


def report(req: Request, records: list[RunRecord]) -> Path:
    out = Report("CIFAR-10 test error of the ResNets (paper Table 6)", req.report_dir)
    groups = by_model(records)
    rows: list[list[Cell]] = []
    numbers: dict[str, Any] = {}
    for model in sorted(groups, key=depth):
        row, numbers[model] = _entry(model, groups[model])
        rows.append(row)
    out.para(budget_note(req, records))
    out.para(
        "Ours: the test error of the seed with the lowest validation error, then "
        "(mean ± std) over all seeds. The paper's column comes from 64k iterations "
        "in fp32; at a smaller budget ours is higher, and what to compare is the "
        "trend with depth."
    )
    header = ["model", "params", "paper error (%)", "ours: best (mean ± std)", "seeds", "per seed"]
    out.table(Table(header, rows))
    out.heading("What it shows")
    out.para(findings(numbers))
    out.figure(
        _chart(numbers),
        "cifar-table",
        "Test error against depth: ours (each seed, and the mean) and the paper's.",
    )
    out.numbers["models"] = numbers
    provenance(out, records, req.command)
    return out.write()


def findings(numbers: dict[str, Any]) -> str:
    """Whether the mean test error falls with every step in depth, as in the paper."""
    models = sorted(numbers, key=depth)
    means = [mean(numbers[m]["test_error"]) for m in models]
    if len(models) < 2:
        return "One depth only: nothing to compare."
    falling = all(b < a for a, b in itertools.pairwise(means))
    text = ", ".join(f"ResNet-{depth(m)} {e:.2f}%" for m, e in zip(models, means, strict=True))
    if falling:
        return (
            f"Mean test error by depth: {text}. Deeper is better at every step, as in the "
            "paper (where the error falls with depth up to 110 layers, and rises at 1202)."
        )
    shallow, deep = models[0], models[-1]
    overall = means[-1] - means[0]
    rises = [
        f"ResNet-{depth(b)} is {eb - ea:.2f} points above ResNet-{depth(a)}"
        for (a, ea), (b, eb) in itertools.pairwise(zip(models, means, strict=True))
        if eb >= ea
    ]
    stds = [
        statistics.stdev(numbers[m]["test_error"])
        for m in models
        if len(numbers[m]["test_error"]) > 1
    ]
    spread = f" (the largest std between seeds of one depth is {max(stds):.2f})" if stds else ""
    # With two depths the one step is the whole span: said once.
    span = (
        f" From ResNet-{depth(shallow)} to ResNet-{depth(deep)} the error "
        f"{'falls' if overall < 0 else 'rises'} by {abs(overall):.2f} points."
        if len(models) > 2
        else ""
    )
    return (
        f"Mean test error by depth: {text}. Deeper is NOT better at every step at this "
        f"budget, unlike the paper (whose gains between neighbouring depths are 0.2–1.2 points "
        f"after 64k iterations): {'; '.join(rises)}{spread}.{span}"
    )


def _chart(numbers: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    depths = sorted(depth(m) for m in numbers)
    for m in numbers:
        d = depth(m)
        ys = numbers[m]["test_error"]
        ax.scatter([d] * len(ys), ys, color="#1f77b4", alpha=0.5, s=18)
    means = [mean(numbers[f"resnet{d}"]["test_error"]) for d in depths]
    ax.plot(depths, means, "-o", color="#1f77b4", label="ours (mean)")
    paper = [(d, float(PAPER_TABLE6[d][1].split()[0])) for d in depths if d in PAPER_TABLE6]
    if paper:
        ax.plot(*zip(*paper, strict=True), "--s", color="#d62728", label="paper")
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("test error (%)")
    ax.set_xscale("log")
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="cifar-table",
    source="Table 6",
    depths=(20, 32, 44, 56, 110),
    seeds=(0, 1),
    jobs=jobs,
    report=report,
    summary_only=True,
)
