"""Shortcut options A, B, C and no shortcut at one depth (He et al. 2015, Table 3, here on
CIFAR-10): does the kind of shortcut matter, against having one at all?"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from resnetlab.experiments.base import Experiment, Job, Request, budget_note, mean, params, pm
from resnetlab.experiments.report import Cell, Report, Table, provenance
from resnetlab.experiments.runs import RunRecord
from resnetlab.runtime.folder_layout import RunFolder

# He et al. 2015, Table 3: ImageNet val top-1 error (%, 10-crop) of the 34-layer nets.
PAPER_TABLE3 = {"plain": "28.54", "A": "25.03", "B": "24.52", "C": "24.19"}

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "plain": ("plain", {}),
    "A": ("resnet", {}),  # the CIFAR ResNets use option A already
    "B": ("resnet", {"shortcut": "B"}),
    "C": ("resnet", {"shortcut": "C"}),
}


def jobs(req: Request) -> list[Job]:
    d = req.depths[0]
    return [
        (f"{kind}{d}", seed, options) for seed in req.seeds for kind, options in VARIANTS.values()
    ]


def _by_variant(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        options = RunFolder(r.run_dir).settings()["model"]["options"]
        variant = "plain" if r.model.startswith("plain") else str(options.get("shortcut", "A"))
        out[variant].append(r)
    return out


def report(req: Request, records: list[RunRecord]) -> Path:
    d = req.depths[0]
    title = f"Shortcut options A, B, C and no shortcut at depth {d} (paper Table 3, on CIFAR-10)"
    out = Report(title, req.report_dir)
    by_variant = _by_variant(records)
    rows: list[list[Cell]] = []
    numbers: dict[str, Any] = {}
    for variant in ("plain", "A", "B", "C"):
        runs = by_variant.get(variant, [])
        if not runs:
            continue
        options = {} if variant in ("plain", "A") else {"shortcut": variant}
        test = [r.test_error for r in runs]
        train = [r.final_train_error() for r in runs]
        n_params = params(runs[0].model, **options)
        numbers[variant] = {"params": n_params, "test_error": test, "train_error": train}
        name = f"plain-{d}" if variant == "plain" else f"ResNet-{d} {variant}"
        rows.append([name, n_params, pm(train), pm(test), PAPER_TABLE3[variant]])
    out.para(budget_note(req, records))
    out.para(
        "A: identity shortcuts, zero-padded where the width grows (no parameters). "
        "B: projection (1×1 conv + BN) only where the shape changes. C: projection on "
        "every shortcut. The paper's column is ImageNet top-1 error of the 34-layer "
        "nets: the ordering is what compares, not the values."
    )
    header = [f"model (depth {d})", "params", "training error (%)", "test error (%)"]
    out.table(Table([*header, "paper, ImageNet-34 (%)"], rows))
    out.heading("What it shows")
    out.para(findings(numbers))
    out.numbers["variants"] = numbers
    provenance(out, records, req.command)
    return out.write()


def findings(numbers: dict[str, Any]) -> str:
    """Whether every shortcut option beats the plain net, and how far apart they are."""
    if "plain" not in numbers or len(numbers) < 2:
        return "Too few variants to compare."
    plain = mean(numbers["plain"]["test_error"])
    res = {v: mean(n["test_error"]) for v, n in numbers.items() if v != "plain"}
    better = all(e < plain for e in res.values())
    spread = max(res.values()) - min(res.values()) if res else 0.0
    return (
        f"Every shortcut option {'beats' if better else 'does not beat'} the plain net "
        f"({plain:.2f}% test error): "
        + ", ".join(f"{v} {e:.2f}%" for v, e in res.items())
        + f". The options differ by {spread:.2f} points among themselves. The paper found "
        "C slightly better than B and B slightly better than A (about half a point each), "
        "small against the gap to the plain net, and concluded that projections are not "
        "essential to address degradation."
    )


EXPERIMENT = Experiment(
    name="shortcuts", source="Table 3 on CIFAR", depths=(20,), jobs=jobs, report=report
)
