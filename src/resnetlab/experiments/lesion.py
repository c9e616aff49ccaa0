"""Lesion study (Veit et al. 2016) on the user's own trained models: deleting and
re-ordering blocks, and the unravelled view's path lengths
(:mod:`resnetlab.experiments.block_lesions` does the deleting and measuring)."""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from torch import Tensor

from resnetlab.errors import InvalidValueError
from resnetlab.experiments import block_lesions as V
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
from resnetlab.experiments.block_lesions import LesionResult
from resnetlab.experiments.report import Cell, Report, Table, provenance
from resnetlab.experiments.runs import RunRecord
from resnetlab.experiments.trained import Trained
from resnetlab.fileio import pyplot
from resnetlab.runtime.execution import Execution, choose

log = logging.getLogger(__name__)


def jobs(req: Request) -> list[Job]:
    return plain_and_residual_jobs(req.depths[:1], req.seeds[:1])


def _settings(req: Request, place: Execution) -> dict[str, Any]:
    return {
        "draws": int(req.options.get("draws", 3)),
        "images": req.options.get("images", 2000),
        "split": str(req.options.get("split", "test")),
        "swaps": int(req.options.get("swaps", 10)),
        "precision": place.precision,
    }


def _study(
    req: Request, record: RunRecord, place: Execution
) -> tuple[LesionResult, list[tuple[Tensor, Tensor]]]:
    """One model's study, read back from the earlier report when it is the same; the
    batches it was measured on."""
    want = _settings(req, place)
    trained = Trained.load(record)
    split = trained.test if want["split"] == "test" else trained.val
    if split is None:
        raise InvalidValueError(f"{record.model}'s data has no {want['split']} split")
    images = want["images"]
    batches = trained.batches(split, None if images is None else int(images), 0, place)
    settings = {
        "images": sum(len(y) for _, y in batches),
        "split": want["split"],
        "draws": want["draws"],
        "swaps": want["swaps"],
        "precision": place.precision,
    }
    done = earlier_study(req.report_dir, record, settings)
    if done is not None:
        log.info(f"lesion study of {record.model}: read from the earlier report")
        return done, batches
    log.info(f"lesion study of {record.model} on {settings['images']:,} images")
    result = V.lesion_study(
        trained.model,
        batches,
        place,
        draws=want["draws"],
        seed=record.seed,
        max_swaps=want["swaps"],
    )
    return result, batches


def report(req: Request, records: list[RunRecord]) -> Path:
    place = choose(req.budget.device, req.budget.precision)
    want = _settings(req, place)
    out = Report("Lesion study: deleting and re-ordering blocks (Veit et al. 2016)", req.report_dir)
    results: dict[str, LesionResult] = {}
    for record in ordered(records):
        results[record.model], batches = _study(req, record, place)
    seconds = sum(r.seconds for r in results.values())
    n_images = sum(len(y) for _, y in batches)
    out.para(budget_note(req, records))
    out.para(
        f"Accuracy on {n_images:,} images of the {want['split']} split (a fixed random subset; "
        "nothing is selected on them: every number is reported), "
        f"{place.precision}. A deleted residual block leaves its shortcut (identity, or "
        "option A's zero-padding for the two downsampling blocks); a deleted plain block "
        "is replaced by the same. Random deletions draw from the non-downsampling blocks "
        f"({want['draws']} draws per k); re-ordering swaps two random blocks of the same stage. "
        f"The study took {seconds / 60:.1f} min of evaluation."
    )
    out.heading("What it shows")
    out.para(findings(results))
    n = max(len(r.single) for r in results.values())
    _figures(out, results, n)
    _tables(out, results, n)
    out.numbers["models"] = {m: _numbers(r) for m, r in results.items()}
    counts = V.path_length_counts(n)
    out.numbers["path_lengths"] = {"blocks": n, "counts": counts, "total": sum(counts)}
    out.numbers["settings"] = {
        "images": n_images,
        "split": want["split"],
        "draws": want["draws"],
        "swaps": want["swaps"],
        "precision": place.precision,
        "seconds": seconds,
    }
    provenance(out, records, req.command)
    return out.write()


def _numbers(r: LesionResult) -> dict[str, Any]:
    return {
        "intact": r.intact,
        "single": [{"block": g, "downsampling": d, "accuracy": a} for g, d, a in r.single],
        "deletions": r.deletions,
        "swaps": r.swaps,
        "seconds": r.seconds,
    }


def _tables(out: Report, results: dict[str, LesionResult], n: int) -> None:
    rows: list[list[Cell]] = []
    for model, r in results.items():
        normal = [a for _, down, a in r.single if not down]
        down = [a for _, d, a in r.single if d]
        rows.append(
            [
                label(model),
                r.intact,
                statistics.fmean(normal),
                min(normal),
                ", ".join(f"{a:.2f}" for a in down) or "–",
            ]
        )
    header = ["model", "intact (%)", "one block deleted: mean (%)", "worst (%)"]
    out.table(Table([*header, "downsampling block deleted (%)"], rows))
    counts = V.path_length_counts(n)
    ks = range(0, n + 1, max(1, n // 9))
    out.table(
        Table(
            ["paths through k branches", *[str(k) for k in ks]],
            [["count", *[counts[k] for k in ks]]],
            caption=f"Path lengths of the unravelled {n}-block ResNet: C({n}, k), summing to "
            f"2^{n} = {2**n:,}; mean length {V.mean_path_length(n):.1f} blocks.",
        )
    )


def earlier_study(folder: Path, record: RunRecord, settings: dict[str, Any]) -> LesionResult | None:
    """The study of ``record`` from the report already in ``folder`` when it was made from
    the same run with the same settings (a re-run rewrites the report without recomputing)."""
    try:
        earlier = json.loads((folder / "results.json").read_text())
        entry = earlier["models"][record.model]
        runs = {r["folder"] for r in earlier["provenance"]["runs"]}
        old = dict(earlier["settings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    old.setdefault("swaps", len(entry.get("swaps", {})))
    if str(record.run_dir) not in runs or any(old.get(k) != v for k, v in settings.items()):
        return None
    share = float(old.get("seconds", 0.0)) / max(1, len(earlier["models"]))
    return LesionResult(
        float(entry["intact"]),
        [(int(s["block"]), bool(s["downsampling"]), float(s["accuracy"])) for s in entry["single"]],
        {int(k): list(v) for k, v in entry["deletions"].items()},
        {int(k): list(v) for k, v in entry["swaps"].items()},
        float(entry.get("seconds", share)),
    )


def findings(results: dict[str, LesionResult]) -> str:
    """What deleting one block costs each model; whether the ResNet keeps more of its
    accuracy than the plain net, as in Veit et al."""
    lines = []
    for model, r in results.items():
        normal = [a for _, down, a in r.single if not down]
        drop = r.intact - statistics.fmean(normal)
        lines.append(
            f"- {label(model)}: {r.intact:.2f}% intact; deleting one (non-downsampling) block "
            f"costs {drop:.2f} points on average, at worst {r.intact - min(normal):.2f}."
        )
    res = [m for m in results if m.startswith("resnet")]
    plain = [m for m in results if m.startswith("plain")]
    if res and plain:
        r, p = results[res[0]], results[plain[0]]
        r_after = statistics.fmean(a for _, d, a in r.single if not d)
        p_after = statistics.fmean(a for _, d, a in p.single if not d)
        shown = r.intact - r_after < p.intact - p_after
        collapsed = p_after < 1.5 * 100 / 10  # near chance for CIFAR-10's ten classes
        lines.append(
            f"- One block deleted: the ResNet keeps {100 * r_after / r.intact:.0f}% of its "
            f"accuracy, the plain net {100 * p_after / p.intact:.0f}%"
            + (" (near chance)" if collapsed else "")
            + ": "
            + (
                "as in Veit et al., the paths through the other blocks carry the ResNet."
                if shown
                else "NOT as in Veit et al. at this budget."
            )
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- charts
def _figures(out: Report, results: dict[str, LesionResult], n: int) -> None:
    out.figure(
        _single_chart(results),
        "lesion-single",
        "Accuracy after deleting one block (downsampling blocks marked ×).",
    )
    out.figure(
        _deletion_chart(results),
        "lesion-deletions",
        "Left: error after deleting k random blocks (mean ± std). Right: error "
        "after k random swaps of blocks within a stage (Veit et al. Fig. 5).",
    )
    out.figure(
        _paths_chart(n),
        "path-lengths",
        f"Unravelled view of {n} blocks: how many of the 2^{n} paths pass through "
        "k residual branches (binomial).",
    )


def _single_chart(results: dict[str, LesionResult]) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for model, r in results.items():
        style = "--" if model.startswith("plain") else "-"
        color = COLORS.get(depth(model)) if model.startswith("resnet") else "#7f7f7f"
        xs = [g + 1 for g, _, _ in r.single]
        name = f"{label(model)} (intact {r.intact:.1f}%)"
        ys = [a for _, _, a in r.single]
        ax.plot(xs, ys, style, color=color, marker="o", markersize=3, label=name)
        down = [(g + 1, a) for g, d, a in r.single if d]
        ax.plot([g for g, _ in down], [a for _, a in down], "x", color="k", markersize=8)
        ax.axhline(r.intact, color=color, linewidth=0.6, linestyle=":")
    ax.set_xlabel("deleted block")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def _deletion_chart(results: dict[str, LesionResult]) -> Any:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for model, r in results.items():
        style = "--" if model.startswith("plain") else "-"
        for ax, data in ((left, r.deletions), (right, r.swaps)):
            ks = [0, *sorted(data)]
            means = [100 - r.intact, *[100 - statistics.fmean(data[k]) for k in ks[1:]]]
            stds = [0.0, *[statistics.pstdev(data[k]) for k in ks[1:]]]
            ax.errorbar(ks, means, yerr=stds, fmt=style, capsize=2, label=label(model))
    left.set_xlabel("blocks deleted")
    right.set_xlabel("blocks swapped")
    for ax in (left, right):
        ax.set_ylabel("error (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    left.legend()
    fig.tight_layout()
    return fig


def _paths_chart(n: int) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    counts = V.path_length_counts(n)
    ax.bar(range(n + 1), [c / 2**n for c in counts], color="#1f77b4")
    ax.set_xlabel("path length (residual branches passed)")
    ax.set_ylabel("share of the 2^n paths")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="lesion",
    source="Veit et al. 2016",
    depths=(56,),
    jobs=jobs,
    report=report,
    options={"images": 2000, "draws": 3, "swaps": 10, "split": "test"},
)
