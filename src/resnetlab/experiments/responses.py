"""Layer responses (He et al. 2015, Fig. 7): the standard deviation of every 3×3 layer's
response in plain nets and ResNets; residual functions are closer to zero, so a ResNet's
layers respond less, and less still as it gets deeper."""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnetlab.experiments.base import (
    COLORS,
    Experiment,
    Job,
    Request,
    budget_note,
    depth,
    label,
    mean,
    ordered,
    plain_and_residual_jobs,
)
from resnetlab.experiments.report import Cell, Report, Table, provenance
from resnetlab.experiments.runs import RunRecord
from resnetlab.fileio import pyplot

log = logging.getLogger(__name__)


def jobs(req: Request) -> list[Job]:
    return plain_and_residual_jobs(req.depths, req.seeds[:1])


# ---------------------------------------------------------------------- computation
def _response_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """The BNs that follow a 3×3 conv (its BN has the conv's name with ``bn``)."""
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.BatchNorm2d):
            continue
        conv = convs.get(name.replace("bn", "conv"))
        if conv is None or conv.kernel_size != (3, 3):
            continue  # shortcut projections and 1×1 convs are not the paper's 3×3 layers
        out.append((name, module))
    return out


def response_stds(model: nn.Module, batches: Any) -> list[tuple[str, float]]:
    """The standard deviation of each 3×3 layer's response (the output of its BN, before
    the ReLU and the addition), per channel over images and positions, averaged over
    channels; in the order of the forward pass."""
    sums: dict[str, list[Tensor]] = {}
    order: list[str] = []

    def hook_for(name: str) -> Any:
        def hook(_m: nn.Module, _i: Any, out: Tensor) -> None:
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

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in _response_layers(model)]
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


def _responses_of(record: RunRecord) -> tuple[int, list[tuple[str, float]]]:
    from resnetlab.experiments.trained import Trained
    from resnetlab.runtime.execution import choose

    trained = Trained.load(record)
    batches = trained.batches(trained.val, None, 0, choose("cpu", "fp32"))
    return len(trained.val), response_stds(trained.model, batches)


# ---------------------------------------------------------------------- report
def report(req: Request, records: list[RunRecord]) -> Path:
    out = Report("Layer responses of plain and residual networks (paper Fig. 7)", req.report_dir)
    stds: dict[str, list[float]] = {}
    images = 0
    for r in ordered(records):
        log.info(f"responses of {r.model} (seed {r.seed}) on its validation split")
        images, layers = _responses_of(r)
        stds[r.model] = [s for _, s in layers]
    out.para(budget_note(req, records))
    out.para(
        "Each point is one 3×3 convolution's response: the output of the BN after "
        "it, before the ReLU and (in a ResNet) before the addition. Its standard "
        f"deviation is taken per channel over the {images:,} validation images and "
        "every position, then averaged over channels, in fp32 with the checkpoint chosen "
        "on validation."
    )
    out.heading("What it shows")
    out.para(findings(stds))
    out.figure(
        _chart(stds),
        "responses",
        "Top: by layer index (original order). Bottom: sorted, largest first.",
    )
    rows: list[list[Cell]] = [
        [label(m), len(v), mean(v), statistics.median(v), max(v)] for m, v in stds.items()
    ]
    out.table(Table(["model", "3×3 layers", "mean std", "median std", "max std"], rows))
    out.numbers["stds"] = stds
    provenance(out, records, req.command)
    return out.write()


def findings(stds: dict[str, list[float]]) -> str:
    """ResNet against plain at each depth, and the deepest ResNet against the shallowest."""
    lines = []
    for d in sorted({depth(m) for m in stds}):
        p, r = stds.get(f"plain{d}"), stds.get(f"resnet{d}")
        if p and r:
            smaller = mean(r) < mean(p)
            lines.append(
                f"- depth {d}: ResNet mean response std {mean(r):.3f} against plain "
                f"{mean(p):.3f} — {'smaller, as in the paper' if smaller else 'NOT smaller'}."
            )
    res = sorted((m for m in stds if m.startswith("resnet")), key=depth)
    if len(res) >= 2:
        a, b = mean(stds[res[0]]), mean(stds[res[-1]])
        lines.append(
            f"- {label(res[-1])} responds at {b:.3f} against {label(res[0])}'s {a:.3f}: "
            + (
                "the deeper ResNet's layers modify the signal less, as the paper reports."
                if b < a
                else "the deeper ResNet does NOT respond less at this budget."
            )
        )
    return "\n".join(lines) or "No plain/residual pair to compare."


def _chart(stds: dict[str, list[float]]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(8, 7))
    for model, values in stds.items():
        style = "--" if model.startswith("plain") else "-"
        color = COLORS.get(depth(model))
        xs = list(range(1, len(values) + 1))
        axes[0].plot(xs, values, style, color=color, label=label(model), linewidth=1.3)
        axes[1].plot(xs, sorted(values, reverse=True), style, color=color, linewidth=1.3)
    axes[0].set_xlabel("layer index (original)")
    axes[1].set_xlabel("layer index (sorted by magnitude)")
    for ax in axes:
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
    axes[0].legend(ncol=2)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="responses", source="Fig. 7", depths=(20, 56), jobs=jobs, report=report
)
