"""The report of each experiment: its tables, charts and what they show, stated plainly.

Every statement a report makes about the result ("plain-56 trains worse than plain-20") is
computed from the numbers in the same report, so a run that does not show the paper's
finding says so.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnetlab.experiments.driver import Request
from resnetlab.experiments.report import Cell, Report, Table, provenance
from resnetlab.experiments.runs import (
    BUDGET_WARMUP,
    BUDGET_WEIGHT_DECAY,
    PAPER_ITERATIONS,
    Log,
    RunRecord,
)
from resnetlab.fileio import pyplot
from resnetlab.models.registry import create_model

# He et al. 2015, Table 6: CIFAR-10 test error (%) and parameters; ResNet-110: best (mean±std).
PAPER_TABLE6 = {
    20: (0.27, "8.75"),
    32: (0.46, "7.51"),
    44: (0.66, "7.17"),
    56: (0.85, "6.97"),
    110: (1.7, "6.43 (6.61±0.16)"),
    1202: (19.4, "7.93"),
}
# He et al. 2015, Table 3: ImageNet val top-1 error (%, 10-crop) of the 34-layer nets.
PAPER_TABLE3 = {"plain": "28.54", "A": "25.03", "B": "24.52", "C": "24.19"}
COLORS = {20: "#1f77b4", 32: "#2ca02c", 44: "#ff7f0e", 56: "#d62728", 110: "#9467bd"}


def _depth(model: str) -> int:
    return int("".join(ch for ch in model if ch.isdigit()))


def _label(model: str) -> str:
    kind = "plain" if model.startswith("plain") else "ResNet"
    return f"{kind}-{_depth(model)}"


def _params(model: str, **options: Any) -> int:
    with torch.device("meta"):
        m = create_model(model, **options)
    return sum(p.numel() for p in m.parameters())


def _by_model(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        out[r.model].append(r)
    return dict(out)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _pm(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "–"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def _budget_note(req: Request, records: list[RunRecord]) -> str:
    """The protocol paragraph every report opens with: what was trained and how it differs
    from the paper, then the training speed of each model on this machine."""
    b = req.budget
    epochs = max((int(r.results.get("epochs", 0)) for r in records), default=0)
    batch = "batch 128" if b.batch_size == 128 else f"batch {b.batch_size} (the paper: 128)"
    same = (
        f"the paper's architectures (option-A shortcuts), {batch}, 4-pixel padding with "
        "random 32×32 crops and flips, a validation split of 10% held out of the training "
        "images (45k/5k on CIFAR-10); each run's checkpoint is chosen on its validation "
        "split and its test error measured once, at the end"
    )
    if b.protocol == "budget":
        steps = max((int(r.steps[-1]["step"]) for r in records if r.steps), default=0)
        note = (
            f"**Protocol: the CPU budget, not the paper's schedule.** Each net trains "
            f"{b.epochs} epoch{'s' * (b.epochs != 1)} ({steps:,} iterations, "
            f"{100 * steps / PAPER_ITERATIONS:.1f}% of the paper's 64k) with a one-cycle "
            f"learning rate: a linear warm-up from 0 to {b.peak_lr} over the first "
            f"{BUDGET_WARMUP:.0%} of the steps, then a linear decay to 0. It differs from the "
            f"paper (§4.2) in the schedule (the paper: lr 0.1, divided by 10 at 32k and 48k "
            f"iterations, 64k in all), SGD with Nesterov momentum, weight decay "
            f"{BUDGET_WEIGHT_DECAY:g} instead of 1e-4, and {_precisions(records)} "
            f"arithmetic instead of fp32; unchanged: {same}. `--paper` runs the paper's "
            "schedule."
        )
    else:
        n = b.iterations
        which = (
            "**Protocol: the paper's schedule (§4.2).**"
            if b.is_paper
            else f"**Protocol: the paper's step schedule cut to {n:,} iterations "
            f"({100 * n / PAPER_ITERATIONS:.1f}% of its 64k).**"
        )
        note = (
            f"{which} {n:,} iterations ({epochs} epochs); learning "
            f"rate {b.peak_lr}, divided by 10 at {n // 2:,} and {3 * n // 4:,} iterations; SGD "
            f"momentum 0.9, weight decay 1e-4; {_precisions(records)} arithmetic; {same}."
        )
    changed = ", ".join(f"`{k}={v}`" for k, v in sorted(b.extra.items()))
    note += f" Changed for every run: {changed}." if changed else ""
    if req.missing:
        note += (
            f" **Not finished when this report was written, and left out of it:** "
            f"{', '.join(req.missing)}."
        )
    return note + " " + _speeds(records)


def _precisions(records: list[RunRecord]) -> str:
    found = sorted({str(r.results.get("precision", "?")) for r in records})
    return "/".join(found) or "?"


def _speeds(records: list[RunRecord]) -> str:
    """Training images/s per model (median over its runs' epochs), with the threads each ran
    on, and the CPU. Measured while training, beside whatever else the machine ran: a
    record of what happened, not a benchmark (``benchmarks/train_step.py`` is one)."""
    speeds: dict[str, list[float]] = {}
    threads: dict[str, set[str]] = {}
    for r in records:
        if r.images_per_s:
            speeds.setdefault(r.model, []).append(r.images_per_s)
            found = re.search(r"(\d+) threads?", str(r.results.get("hardware", "")))
            threads.setdefault(r.model, set()).add(found.group(1) if found else "?")
    if not speeds:
        return ""
    parts = ", ".join(
        f"{_label(m)} {statistics.median(v):,.0f} ({'/'.join(sorted(threads[m]))} "
        f"thread{'s' * (threads[m] != {'1'})})"
        for m, v in sorted(speeds.items(), key=lambda kv: (_depth(kv[0]), kv[0]))
    )
    cpu = str(records[0].results.get("hardware", "?")).split(",")[0]
    return (
        f"Training speed (images/s, median over epochs; measured while training, beside "
        f"other work on the machine): {parts}; CPU: {cpu}."
    )


# ---------------------------------------------------------------------- degradation
def degradation_report(req: Request, records: list[RunRecord], log: Log) -> Path:
    report = Report("Degradation: plain vs residual networks on CIFAR-10 (paper Fig. 6)",
                    req.report_dir)  # fmt: skip
    groups = _by_model(records)
    rows: list[list[Cell]] = []
    numbers: dict[str, Any] = {}
    for model in sorted(groups, key=lambda m: (m.startswith("resnet"), _depth(m))):
        runs = groups[model]
        train = [r.final_train_error() for r in runs]
        val = [r.best_val_error for r in runs]
        test = [r.test_error for r in runs]
        numbers[model] = {"params": _params(model), "train_error": train,
                          "best_val_error": val, "test_error": test}  # fmt: skip
        rows.append([_label(model), numbers[model]["params"], _pm(train), _pm(val), _pm(test)])
    report.para(_budget_note(req, records))
    report.heading("What it shows")
    report.para(_degradation_findings(numbers))
    report.heading("Training and validation error against iterations")
    report.figure(_degradation_chart(groups), "degradation",
                  "Dashed: training error (mean over each 25 iterations, smoothed); solid: "
                  "validation error at each epoch's end. Left plain, right residual.")  # fmt: skip
    report.table(Table(["model", "params", "training error (%)", "best val error (%)",
                        "test error (%)"], rows,
                       caption="Training error: mean over the last 10% of iterations (with "
                       "augmentation, as the paper's curves). Mean ± std over seeds when "
                       "there are several."))  # fmt: skip
    report.numbers["models"] = numbers
    provenance(report, records, req.command)
    return report.write()


def _extremes(numbers: dict[str, Any], kind: str) -> tuple[str, str] | None:
    models = sorted((m for m in numbers if m.startswith(kind)), key=_depth)
    return (models[0], models[-1]) if len(models) >= 2 else None


def _degradation_findings(numbers: dict[str, Any]) -> str:
    lines = []
    for kind, want in (("plain", "higher"), ("resnet", "lower")):
        pair = _extremes(numbers, kind)
        if pair is None:
            continue
        shallow, deep = pair
        a = _mean(numbers[shallow]["train_error"])
        b = _mean(numbers[deep]["train_error"])
        ta, tb = _mean(numbers[shallow]["test_error"]), _mean(numbers[deep]["test_error"])
        shown = b > a if want == "higher" else b < a
        verdict = "as in the paper" if shown else "NOT as in the paper at this budget"
        lines.append(
            f"- {_label(deep)} ends at {b:.2f}% training error against {_label(shallow)}'s "
            f"{a:.2f}% ({'higher' if b > a else 'lower'}: {verdict}); test error "
            f"{tb:.2f}% against {ta:.2f}%."
        )
    plain = sorted((m for m in numbers if m.startswith("plain")), key=_depth)
    if len(plain) >= 3:
        errors = [_mean(numbers[m]["train_error"]) for m in plain]
        ordered = all(x < y for x, y in itertools.pairwise(errors))
        lines.append(
            "- Plain nets, training error by depth: "
            + ", ".join(f"{_label(m)} {e:.2f}%" for m, e in zip(plain, errors, strict=True))
            + (
                " — it rises with every step in depth."
                if ordered
                else " — not strictly rising with depth at this budget."
            )
        )
    return "\n".join(lines) if lines else "Too few depths to compare."


def _degradation_chart(groups: dict[str, list[RunRecord]]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    top = 5.0
    for ax, kind in zip(axes, ("plain", "resnet"), strict=True):
        for model in sorted((m for m in groups if m.startswith(kind)), key=_depth):
            run = groups[model][0]  # the first seed draws the curve
            color = COLORS.get(_depth(model))
            if run.steps:
                xs = [s["step"] for s in run.steps]
                ys = _smooth([100 * s["train_error"] for s in run.steps], 4)
                ax.plot(xs, ys, "--", color=color, linewidth=1)
                top = max(top, max(ys[len(ys) // 4 :], default=top))
            xs = [float(e["step"]) for e in run.epochs]
            ys = [100 - float(e["val_top1"]) for e in run.epochs]
            ax.plot(xs, ys, "-", color=color, linewidth=2, marker="o", markersize=3,
                    label=_label(model))  # fmt: skip
        ax.set_title("plain networks" if kind == "plain" else "ResNets")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, min(100, top * 1.15))
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- cifar table
def cifar_table_report(req: Request, records: list[RunRecord], log: Log) -> Path:
    report = Report("CIFAR-10 test error of the ResNets (paper Table 6)", req.report_dir)
    groups = _by_model(records)
    rows: list[list[Cell]] = []
    numbers: dict[str, Any] = {}
    for model in sorted(groups, key=_depth):
        runs = groups[model]
        depth = _depth(model)
        # "best" is chosen on validation error, never on the test split.
        chosen = min(runs, key=lambda r: r.best_val_error)
        test = [r.test_error for r in runs]
        paper = PAPER_TABLE6.get(depth, (float("nan"), "–"))
        mean_std = f" ({_pm(test)})" if len(test) > 1 else ""
        params = _params(model)
        rows.append([f"ResNet-{depth}", f"{params / 1e6:.2f}M", paper[1],
                     f"{chosen.test_error:.2f}{mean_std}", len(runs),
                     ", ".join(f"{t:.2f}" for t in test)])  # fmt: skip
        numbers[model] = {"params": params, "test_error": test,
                          "seeds": [r.seed for r in runs], "chosen_seed": chosen.seed,
                          "chosen_test_error": chosen.test_error,
                          "best_val_error": [r.best_val_error for r in runs],
                          "paper": paper[1]}  # fmt: skip
    report.para(_budget_note(req, records))
    report.para("Ours: the test error of the seed with the lowest validation error, then "
                "(mean ± std) over all seeds. The paper's column comes from 64k iterations "
                "in fp32; at a smaller budget ours is higher, and what to compare is the "
                "trend with depth.")  # fmt: skip
    report.table(Table(["model", "params", "paper error (%)", "ours: best (mean ± std)",
                        "seeds", "per seed"], rows))  # fmt: skip
    report.heading("What it shows")
    report.para(_table_findings(numbers))
    report.figure(
        _table_chart(numbers),
        "cifar-table",
        "Test error against depth: ours (each seed, and the mean) and the paper's.",
    )
    report.numbers["models"] = numbers
    provenance(report, records, req.command)
    return report.write()


def _table_findings(numbers: dict[str, Any]) -> str:
    models = sorted(numbers, key=_depth)
    means = [_mean(numbers[m]["test_error"]) for m in models]
    if len(models) < 2:
        return "One depth only: nothing to compare."
    falling = all(b < a for a, b in itertools.pairwise(means))
    text = ", ".join(f"ResNet-{_depth(m)} {e:.2f}%" for m, e in zip(models, means, strict=True))
    return (f"Mean test error by depth: {text}. "
            + ("Deeper is better at every step, as in the paper (up to 110 layers)."
               if falling else "Deeper is NOT better at every step at this budget, unlike "
               "the paper (whose gains between neighbouring depths are 0.2–1.2 points after "
               "64k iterations)."))  # fmt: skip


def _table_chart(numbers: dict[str, Any]) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    depths = sorted(_depth(m) for m in numbers)
    for m in numbers:
        d = _depth(m)
        ax.scatter([d] * len(numbers[m]["test_error"]), numbers[m]["test_error"],
                   color="#1f77b4", alpha=0.5, s=18)  # fmt: skip
    ax.plot(depths, [_mean(numbers[f"resnet{d}"]["test_error"]) for d in depths], "-o",
            color="#1f77b4", label="ours (mean)")  # fmt: skip
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


# ---------------------------------------------------------------------- shortcuts
def shortcuts_report(req: Request, records: list[RunRecord], log: Log) -> Path:
    import yaml

    depth = req.depths[0]
    report = Report(f"Shortcut options A, B, C and no shortcut at depth {depth} "
                    "(paper Table 3, on CIFAR-10)", req.report_dir)  # fmt: skip
    by_variant: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        options = yaml.safe_load((r.run_dir / "config.yaml").read_text())["model"]["options"]
        variant = "plain" if r.model.startswith("plain") else str(options.get("shortcut", "A"))
        by_variant[variant].append(r)
    rows: list[list[Cell]] = []
    numbers: dict[str, Any] = {}
    for variant in ("plain", "A", "B", "C"):
        runs = by_variant.get(variant, [])
        if not runs:
            continue
        model = runs[0].model
        options = {} if variant in ("plain", "A") else {"shortcut": variant}
        test = [r.test_error for r in runs]
        train = [r.final_train_error() for r in runs]
        numbers[variant] = {"params": _params(model, **options), "test_error": test,
                            "train_error": train}  # fmt: skip
        name = f"plain-{depth}" if variant == "plain" else f"ResNet-{depth} {variant}"
        rows.append([name, numbers[variant]["params"], _pm(train), _pm(test),
                     PAPER_TABLE3[variant]])  # fmt: skip
    report.para(_budget_note(req, records))
    report.para("A: identity shortcuts, zero-padded where the width grows (no parameters). "
                "B: projection (1×1 conv + BN) only where the shape changes. C: projection on "
                "every shortcut. The paper's column is ImageNet top-1 error of the 34-layer "
                "nets: the ordering is what compares, not the values.")  # fmt: skip
    report.table(Table([f"model (depth {depth})", "params", "training error (%)",
                        "test error (%)", "paper, ImageNet-34 (%)"], rows))  # fmt: skip
    report.heading("What it shows")
    report.para(_shortcut_findings(numbers))
    report.numbers["variants"] = numbers
    provenance(report, records, req.command)
    return report.write()


def _shortcut_findings(numbers: dict[str, Any]) -> str:
    if "plain" not in numbers or len(numbers) < 2:
        return "Too few variants to compare."
    plain = _mean(numbers["plain"]["test_error"])
    res = {v: _mean(n["test_error"]) for v, n in numbers.items() if v != "plain"}
    better = all(e < plain for e in res.values())
    spread = max(res.values()) - min(res.values()) if res else 0.0
    return (f"Every shortcut option {'beats' if better else 'does not beat'} the plain net "
            f"({plain:.2f}% test error): "
            + ", ".join(f"{v} {e:.2f}%" for v, e in res.items())
            + f". The options differ by {spread:.2f} points among themselves. The paper found "
            "C slightly better than B and B slightly better than A (about half a point each), "
            "small against the gap to the plain net, and concluded that projections are not "
            "essential to address degradation.")  # fmt: skip


# ---------------------------------------------------------------------- responses
def response_stds(model: nn.Module, batches: Any) -> list[tuple[str, float]]:
    """The standard deviation of each 3×3 layer's response (the output of its BN, before
    the ReLU and the addition), per channel over images and positions, averaged over
    channels; in the order of the forward pass."""
    sums: dict[str, list[Tensor]] = {}
    order: list[str] = []
    handles = []
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    for name, module in model.named_modules():
        if not isinstance(module, nn.BatchNorm2d):
            continue
        conv = convs.get(name.replace("bn", "conv"))
        if conv is None or conv.kernel_size != (3, 3):
            continue  # shortcut projections and 1×1 convs are not the paper's 3×3 layers

        def hook(_m: nn.Module, _i: Any, out: Tensor, name: str = name) -> None:
            x = out.detach().double()
            if name not in sums:
                zero = torch.zeros(x.shape[1], dtype=torch.float64)
                sums[name] = [zero, zero.clone(), torch.zeros((), dtype=torch.float64)]
            s = sums[name]
            s[0] += x.sum(dim=(0, 2, 3))
            s[1] += (x * x).sum(dim=(0, 2, 3))
            s[2] += x.shape[0] * x.shape[2] * x.shape[3]
            if name not in order:
                order.append(name)

        handles.append(module.register_forward_hook(hook))
    model.eval()
    try:
        with torch.no_grad():
            for x, _ in batches:
                model(x)
    finally:
        for h in handles:
            h.remove()
    out = []
    for name in order:
        total, squares, n = sums[name]
        var = (squares / n - (total / n) ** 2).clamp_min(0.0)
        out.append((name, float(var.sqrt().mean())))
    return out


def _responses_of(record: RunRecord, log: Log) -> tuple[int, list[tuple[str, float]]]:
    from resnetlab.experiments.trained import Trained
    from resnetlab.runtime.execution import choose

    trained = Trained.load(record, log)
    batches = trained.batches(trained.val, None, 0, choose("cpu", "fp32"))
    return len(trained.val), response_stds(trained.model, batches)


def _ordered(records: list[RunRecord]) -> list[RunRecord]:
    """Plain nets first, then ResNets, each by depth."""
    return sorted(records, key=lambda r: (r.model.startswith("resnet"), _depth(r.model)))


def responses_report(req: Request, records: list[RunRecord], log: Log) -> Path:
    report = Report("Layer responses of plain and residual networks (paper Fig. 7)",
                    req.report_dir)  # fmt: skip
    stds: dict[str, list[float]] = {}
    images = 0
    for r in _ordered(records):
        log(f"responses of {r.model} (seed {r.seed}) on its validation split")
        images, layers = _responses_of(r, log)
        stds[r.model] = [s for _, s in layers]
    report.para(_budget_note(req, records))
    report.para("Each point is one 3×3 convolution's response: the output of the BN after "
                "it, before the ReLU and (in a ResNet) before the addition. Its standard "
                f"deviation is taken per channel over the {images:,} validation images and "
                "every position, then averaged over channels, in fp32 with the checkpoint chosen "
                "on validation.")  # fmt: skip
    report.heading("What it shows")
    report.para(_response_findings(stds))
    report.figure(
        _response_chart(stds),
        "responses",
        "Top: by layer index (original order). Bottom: sorted, largest first.",
    )
    report.table(Table(["model", "3×3 layers", "mean std", "median std", "max std"],
                       [[_label(m), len(v), _mean(v), statistics.median(v), max(v)]
                        for m, v in stds.items()]))  # fmt: skip
    report.numbers["stds"] = stds
    provenance(report, records, req.command)
    return report.write()


def _response_findings(stds: dict[str, list[float]]) -> str:
    lines = []
    for d in sorted({_depth(m) for m in stds}):
        p, r = stds.get(f"plain{d}"), stds.get(f"resnet{d}")
        if p and r:
            smaller = _mean(r) < _mean(p)
            lines.append(
                f"- depth {d}: ResNet mean response std {_mean(r):.3f} against plain "
                f"{_mean(p):.3f} — {'smaller, as in the paper' if smaller else 'NOT smaller'}."
            )
    res = sorted((m for m in stds if m.startswith("resnet")), key=_depth)
    if len(res) >= 2:
        a, b = _mean(stds[res[0]]), _mean(stds[res[-1]])
        lines.append(
            f"- {_label(res[-1])} responds at {b:.3f} against {_label(res[0])}'s {a:.3f}: "
            + ("the deeper ResNet's layers modify the signal less, as the paper reports."
               if b < a else "the deeper ResNet does NOT respond less at this budget.")
        )  # fmt: skip
    return "\n".join(lines) or "No plain/residual pair to compare."


def _response_chart(stds: dict[str, list[float]]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(8, 7))
    for model, values in stds.items():
        style = "--" if model.startswith("plain") else "-"
        color = COLORS.get(_depth(model))
        xs = list(range(1, len(values) + 1))
        axes[0].plot(xs, values, style, color=color, label=_label(model), linewidth=1.3)
        axes[1].plot(xs, sorted(values, reverse=True), style, color=color, linewidth=1.3)
    axes[0].set_xlabel("layer index (original)")
    axes[1].set_xlabel("layer index (sorted by magnitude)")
    for ax in axes:
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
    axes[0].legend(ncol=2)
    fig.tight_layout()
    return fig


REPORTERS: dict[str, Callable[[Request, list[RunRecord], Log], Path]] = {
    "degradation": degradation_report,
    "cifar-table": cifar_table_report,
    "responses": responses_report,
    "shortcuts": shortcuts_report,
}
