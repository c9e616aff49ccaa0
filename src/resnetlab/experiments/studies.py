"""Why residual learning works, seen on the user's own trained models: loss landscapes
(Li et al., 2018) and lesion studies (Veit et al., 2016), in the same report format as the
paper experiments. The trained models come from the run store (the degradation runs when
they exist, else trained on the spot at the requested budget)."""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from resnetlab.experiments import landscape as L
from resnetlab.experiments import lesion as V
from resnetlab.experiments.driver import Request
from resnetlab.experiments.report import Cell, Report, Table, provenance
from resnetlab.experiments.reports import COLORS, _budget_note, _depth, _label, _ordered
from resnetlab.experiments.runs import Log, RunRecord
from resnetlab.experiments.trained import Trained
from resnetlab.fileio import pyplot
from resnetlab.models.resnet import ResNet
from resnetlab.train.device import Placement, choose
from resnetlab.train.loop import evaluate


def _placement(req: Request) -> Placement:
    return choose(req.budget.device, req.budget.precision)


# ---------------------------------------------------------------------- landscape
def landscape_report(req: Request, records: list[RunRecord], log: Log) -> Path:
    points = int(req.options.get("grid") or 13)
    span = float(req.options.get("span", 1.0))
    images = int(req.options.get("images", 1000))
    place = _placement(req)
    report = Report("Loss landscapes of plain and residual networks (Li et al. 2018)",
                    req.report_dir)  # fmt: skip
    grids: dict[str, L.Grid] = {}
    for record in _ordered(records):
        trained = Trained.load(record, log)
        batches = trained.batches(trained.train, images, seed=0, place=place)
        save_to = req.report_dir / f"{record.model}.npz"
        left = L.Grid.load(save_to, points, span)
        evals = int(np.isnan(left.loss1d).sum() + np.isnan(left.loss2d).sum())
        t0 = time.monotonic()
        evaluate(trained.model, batches, place=place)
        per_eval = time.monotonic() - t0
        log(f"{record.model}: {evals} evaluations to go, of {images:,} training images, about "
            f"{evals * per_eval / 60:.1f} min ({per_eval:.2f} s each, "
            f"{place.precision})")  # fmt: skip
        req.report_dir.mkdir(parents=True, exist_ok=True)
        grid = L.surface(trained.model, batches, place, points=points, span=span,
                         seed=record.seed, save_to=save_to, log=log)  # fmt: skip
        grid.write_csv(req.report_dir / f"{record.model}.csv")
        grids[record.model] = grid
    seconds = sum(g.seconds for g in grids.values())
    report.para(_budget_note(req, records))
    report.para(
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
    report.heading("What it shows")
    report.para(_landscape_findings(grids))
    report.figure(
        _contours(grids),
        "landscape-contours",
        "2-D training-loss contours (log-spaced levels), one panel per model.",
    )
    report.figure(_surfaces(grids), "landscape-surfaces", "The same losses as 3-D surfaces.")
    report.figure(_curves(grids), "landscape-1d",
                  "1-D: training loss (left) and accuracy (right) along δ.")  # fmt: skip
    rows: list[list[Cell]] = []
    for model, g in grids.items():
        c = len(g.coords) // 2
        inner = L.inner(g)
        rows.append([_label(model), float(g.loss2d[c, c]), float(g.acc2d[c, c]),
                     float(np.median(g.loss2d)), float(inner.mean()), float(inner.max()),
                     L.local_minima(g.loss2d)])  # fmt: skip
    report.table(Table(["model", "loss at θ", "accuracy at θ (%)", "median loss on grid",
                        "inner mean loss", "inner max loss", "local minima"], rows,
                       caption="Inner: the points with |α|, |β| ≤ half the span. Local "
                       "minima: interior grid points below all eight neighbours (1 for a "
                       "single basin). Losses far from θ reach the thousands in deep nets, "
                       "so medians and the inner region describe the shape better than "
                       "means."))  # fmt: skip
    report.para("Raw grids: `<model>.npz` (coords, loss1d, acc1d, loss2d, acc2d) and "
                "`<model>.csv` in this folder.")  # fmt: skip
    report.numbers["grids"] = {
        m: {"coords": g.coords.tolist(), "loss1d": g.loss1d.tolist(),
            "acc1d": g.acc1d.tolist(), "loss2d": g.loss2d.tolist(),
            "local_minima": L.local_minima(g.loss2d)}
        for m, g in grids.items()
    }  # fmt: skip
    report.numbers["settings"] = {"grid": points, "span": span, "images": images,
                                  "precision": place.precision, "seconds": seconds}  # fmt: skip
    provenance(report, records, req.command)
    return report.write()


def _landscape_findings(grids: dict[str, L.Grid]) -> str:
    lines = []
    for d in sorted({_depth(m) for m in grids}):
        p, r = grids.get(f"plain{d}"), grids.get(f"resnet{d}")
        if p is None or r is None:
            continue
        lines.append(
            f"- depth {d}: median grid loss plain {np.median(p.loss2d):.2f} vs ResNet "
            f"{np.median(r.loss2d):.2f}; highest loss in the inner region plain "
            f"{L.inner(p).max():.2f} vs ResNet {L.inner(r).max():.2f}; local minima plain "
            f"{L.local_minima(p.loss2d)} vs ResNet {L.local_minima(r.loss2d)}."
        )
    plains = sorted((m for m in grids if m.startswith("plain")), key=_depth)
    deep = plains[-1] if plains else ""
    twin = deep.replace("plain", "resnet")
    if len(plains) >= 2 and twin in grids:
        a, b = (float(np.median(grids[m].loss2d)) for m in (plains[0], deep))
        c = float(np.median(grids[twin].loss2d))
        shown = b > a and b > c
        lines.append(
            f"- Li et al.: without shortcuts the surface turns sharp as the net gets deeper, "
            f"and shortcuts keep it smooth. Here the median loss around {_label(deep)} is "
            f"{b:.2f}, against {a:.2f} around {_label(plains[0])} and {c:.2f} around "
            f"{_label(twin)}: " + ("as they report." if shown else "NOT as they report.")
        )
    return "\n".join(lines) or "No plain/residual pair to compare."


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
        ax.set_title(_label(model))
        ax.set_xlabel("α (δ)")
        ax.set_ylabel("β (η)")
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def _surfaces(grids: dict[str, L.Grid]) -> Any:
    fig, axes = _panels(len(grids), three_d=True)
    for ax, (model, g) in zip(axes, grids.items(), strict=True):
        a, b = np.meshgrid(g.coords, g.coords, indexing="ij")
        ax.plot_surface(a, b, np.minimum(g.loss2d, 10.0), cmap="viridis", linewidth=0,
                        antialiased=True)  # fmt: skip
        ax.set_title(_label(model))
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
        color = COLORS.get(_depth(model))
        left.plot(g.coords, g.loss1d, style, color=color, label=_label(model))
        right.plot(g.coords, g.acc1d, style, color=color, label=_label(model))
    left.set_ylabel("training loss")
    left.set_yscale("log")
    right.set_ylabel("training accuracy (%)")
    for ax in (left, right):
        ax.set_xlabel("α")
        ax.grid(alpha=0.3)
    left.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- lesion
def _accuracy(model: nn.Module, batches: list[tuple[Tensor, Tensor]], place: Placement) -> float:
    return evaluate(model, batches, place=place)["top1"]


@dataclass
class LesionResult:
    intact: float
    single: list[tuple[int, bool, float]]  # (block, downsampling, accuracy)
    deletions: dict[int, list[float]]  # k → accuracy per draw
    swaps: dict[int, list[float]]  # number of swaps → accuracy per draw
    seconds: float = 0.0  # how long the study of this model took


def lesion_study(model: ResNet, batches: list[tuple[Tensor, Tensor]], place: Placement, *,
                 draws: int, seed: int, max_swaps: int, log: Log) -> LesionResult:  # fmt: skip
    """Accuracy of ``model`` whole, with each block deleted alone, with k random
    non-downsampling blocks deleted (k = 1 … n, ``draws`` draws each), and after 1 …
    ``max_swaps`` random swaps of blocks within a stage."""
    rng = random.Random(seed)
    started = time.monotonic()
    blocks = [b for stage in model.stages() for b in stage]
    intact = _accuracy(model, batches, place)
    single = []
    for g, block in enumerate(blocks):
        with V.lesioned(model, {g}):
            single.append((g, V.is_downsampling(block), _accuracy(model, batches, place)))
    pool = [g for g, b in enumerate(blocks) if not V.is_downsampling(b)]
    deletions: dict[int, list[float]] = {}
    for k in range(1, len(pool) + 1):
        deletions[k] = []
        for _ in range(draws if k < len(pool) else 1):
            with V.lesioned(model, V.random_deletions(pool, k, rng)):
                deletions[k].append(_accuracy(model, batches, place))
        log(f"  {k} blocks deleted: {statistics.fmean(deletions[k]):.2f}%")
    swaps: dict[int, list[float]] = {}
    for s in range(1, max_swaps + 1):
        swaps[s] = []
        for _ in range(draws):
            with V.lesioned(model, order=V.random_swaps(model, s, rng)):
                swaps[s].append(_accuracy(model, batches, place))
    return LesionResult(intact, single, deletions, swaps, time.monotonic() - started)


def lesion_report(req: Request, records: list[RunRecord], log: Log) -> Path:
    draws = int(req.options.get("draws", 3))
    images = req.options.get("images", 2000)
    split_name = str(req.options.get("split", "test"))
    max_swaps = int(req.options.get("swaps", 10))
    place = _placement(req)
    report = Report("Lesion study: deleting and re-ordering blocks (Veit et al. 2016)",
                    req.report_dir)  # fmt: skip
    results: dict[str, LesionResult] = {}
    for record in _ordered(records):
        trained = Trained.load(record, log)
        split = trained.test if split_name == "test" else trained.val
        if split is None:
            raise ValueError(f"{record.model}'s data has no {split_name} split")
        batches = trained.batches(split, None if images is None else int(images), 0, place)
        settings = {"images": sum(len(y) for _, y in batches), "split": split_name,
                    "draws": draws, "swaps": max_swaps, "precision": place.precision}  # fmt: skip
        done = _earlier_lesion(req.report_dir, record, settings)
        if done is not None:
            log(f"lesion study of {record.model}: read from the earlier report")
            results[record.model] = done
            continue
        log(f"lesion study of {record.model} on {settings['images']:,} images")
        results[record.model] = lesion_study(trained.model, batches, place, draws=draws,
                                             seed=record.seed, max_swaps=max_swaps,
                                             log=log)  # fmt: skip
    seconds = sum(r.seconds for r in results.values())
    n_images = sum(len(y) for _, y in batches)
    report.para(_budget_note(req, records))
    report.para(
        f"Accuracy on {n_images:,} images of the {split_name} split (a fixed random subset; "
        "nothing is selected on them: every number is reported), "
        f"{place.precision}. A deleted residual block leaves its shortcut (identity, or "
        "option A's zero-padding for the two downsampling blocks); a deleted plain block "
        "is replaced by the same. Random deletions draw from the non-downsampling blocks "
        f"({draws} draws per k); re-ordering swaps two random blocks of the same stage. "
        f"The study took {seconds / 60:.1f} min of evaluation."
    )
    report.heading("What it shows")
    report.para(_lesion_findings(results))
    report.figure(
        _single_chart(results),
        "lesion-single",
        "Accuracy after deleting one block (downsampling blocks marked ×).",
    )
    report.figure(
        _deletion_chart(results),
        "lesion-deletions",
        "Left: error after deleting k random blocks (mean ± std). Right: error "
        "after k random swaps of blocks within a stage (Veit et al. Fig. 5).",
    )
    n = max(len(r.single) for r in results.values())
    counts = V.path_length_counts(n)
    report.figure(_paths_chart(n), "path-lengths",
                  f"Unravelled view of {n} blocks: how many of the 2^{n} paths pass through "
                  "k residual branches (binomial).")  # fmt: skip
    rows: list[list[Cell]] = []
    for model, r in results.items():
        normal = [a for _, down, a in r.single if not down]
        down = [a for _, d, a in r.single if d]
        rows.append([_label(model), r.intact, statistics.fmean(normal), min(normal),
                     ", ".join(f"{a:.2f}" for a in down) or "–"])  # fmt: skip
    report.table(Table(["model", "intact (%)", "one block deleted: mean (%)", "worst (%)",
                        "downsampling block deleted (%)"], rows))  # fmt: skip
    report.table(Table(
        ["paths through k branches", *[str(k) for k in range(0, n + 1, max(1, n // 9))]],
        [["count", *[counts[k] for k in range(0, n + 1, max(1, n // 9))]]],
        caption=f"Path lengths of the unravelled {n}-block ResNet: C({n}, k), summing to "
        f"2^{n} = {2**n:,}; mean length {V.mean_path_length(n):.1f} blocks.",
    ))  # fmt: skip
    report.numbers["models"] = {
        m: {"intact": r.intact,
            "single": [{"block": g, "downsampling": d, "accuracy": a} for g, d, a in r.single],
            "deletions": r.deletions, "swaps": r.swaps, "seconds": r.seconds}
        for m, r in results.items()
    }  # fmt: skip
    report.numbers["path_lengths"] = {"blocks": n, "counts": counts, "total": sum(counts)}
    report.numbers["settings"] = {"images": n_images, "split": split_name, "draws": draws,
                                  "swaps": max_swaps, "precision": place.precision,
                                  "seconds": seconds}  # fmt: skip
    provenance(report, records, req.command)
    return report.write()


def _earlier_lesion(
    folder: Path, record: RunRecord, settings: dict[str, Any]
) -> LesionResult | None:
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


def _lesion_findings(results: dict[str, LesionResult]) -> str:
    lines = []
    for model, r in results.items():
        normal = [a for _, down, a in r.single if not down]
        drop = r.intact - statistics.fmean(normal)
        lines.append(
            f"- {_label(model)}: {r.intact:.2f}% intact; deleting one (non-downsampling) block "
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
            + (" (near chance)" if collapsed else "") + ": "
            + ("as in Veit et al., the paths through the other blocks carry the ResNet."
               if shown else "NOT as in Veit et al. at this budget.")
        )  # fmt: skip
    return "\n".join(lines)


def _single_chart(results: dict[str, LesionResult]) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for model, r in results.items():
        style = "--" if model.startswith("plain") else "-"
        color = COLORS.get(_depth(model)) if model.startswith("resnet") else "#7f7f7f"
        xs = [g + 1 for g, _, _ in r.single]
        ax.plot(xs, [a for _, _, a in r.single], style, color=color, marker="o", markersize=3,
                label=f"{_label(model)} (intact {r.intact:.1f}%)")  # fmt: skip
        ax.plot([g + 1 for g, d, _ in r.single if d], [a for _, d, a in r.single if d], "x",
                color="k", markersize=8)  # fmt: skip
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
            ax.errorbar(ks, means, yerr=stds, fmt=style, capsize=2, label=_label(model))
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
