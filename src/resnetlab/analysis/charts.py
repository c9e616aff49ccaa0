"""Charts (matplotlib, PNG or SVG by the file's suffix): parameters and MACs per stage of a
model, and a depth sweep across models. Files are written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from resnetlab.analysis.compare import compare
from resnetlab.analysis.counting import trace_calls
from resnetlab.errors import InvalidValueError
from resnetlab.fileio import check_writable, pyplot, save_figure
from resnetlab.models.registry import get_entry

CHART_SUFFIXES = (".png", ".svg")
_STEM = {"conv1", "bn1", "relu", "maxpool"}
_HEAD = {"final_norm", "final_relu", "avgpool", "flatten", "drop", "fc", "classifier"}


@dataclass(frozen=True)
class StageCost:
    stage: str
    params: int
    conv_macs: int  # conv/linear MACs, whole batch


def stage_costs(model: nn.Module, input_size: tuple[int, ...]) -> list[StageCost]:
    """Parameters and conv/linear MACs of each top-level part: the stem, each stage
    (``layer1``…), the head. Parts a ResNet does not name are listed under their own name."""
    groups: dict[str, list[int]] = {}
    for call in trace_calls(model, input_size):
        if call.depth != 1:
            continue
        if call.name in _STEM:
            group = "stem"
        elif call.name in _HEAD:
            group = "head"
        else:
            group = call.name
        acc = groups.setdefault(group, [0, 0])
        acc[0] += 0 if call.recursive else call.params
        acc[1] += call.conv_macs
    return [StageCost(g, p, m) for g, (p, m) in groups.items()]


def check_chart_path(path: str | os.PathLike[str]) -> Path:
    """Validate an output path for a chart: a known suffix in an existing, writable folder."""
    p = Path(path)
    if p.suffix.lower() not in CHART_SUFFIXES:
        raise InvalidValueError(f"chart file must end in {' or '.join(CHART_SUFFIXES)}: {p}")
    return check_writable(p)


def plot_stages(
    model: nn.Module, input_size: tuple[int, ...], path: str | os.PathLike[str], *, title: str
) -> list[StageCost]:
    """Bar charts of parameters and MACs per stage; returns the numbers plotted."""
    out = check_chart_path(path)
    costs = stage_costs(model, input_size)
    plt = pyplot()
    fig, (ax_p, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    names = [c.stage for c in costs]
    ax_p.bar(names, [c.params / 1e6 for c in costs], color="#4c72b0")
    ax_p.set_ylabel("parameters (millions)")
    ax_p.set_title("Parameters per stage")
    ax_m.bar(names, [c.conv_macs / 1e9 for c in costs], color="#dd8452")
    ax_m.set_ylabel("conv/linear MACs (G, whole batch)")
    ax_m.set_title(f"Multiply-adds per stage, input {'×'.join(map(str, input_size))}")
    for ax in (ax_p, ax_m):
        ax.tick_params(axis="x", rotation=30)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    try:
        save_figure(fig, out)
    finally:
        plt.close(fig)
    return costs


def plot_depth_sweep(
    names: Sequence[str], path: str | os.PathLike[str], *, input_size: Sequence[int] | None = None
) -> list[tuple[str, str, int, int, int]]:
    """Parameters and MACs against depth (weighted layers) for registered models, one line
    per family. Returns ``(name, family, depth, params, conv_macs)`` per model."""
    out = check_chart_path(path)
    if not names:
        raise InvalidValueError("a depth sweep needs at least one model")
    table = compare(*names, input_size=input_size)
    points = [
        (row.label, get_entry(row.label).family, row.depth, row.params, row.conv_macs)
        for row in table.rows
    ]
    plt = pyplot()
    fig, (ax_p, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    labelled: set[tuple[int, int]] = set()
    for family in dict.fromkeys(p[1] for p in points):
        fam = sorted((p for p in points if p[1] == family), key=lambda p: p[2])
        depths = [p[2] for p in fam]
        ax_p.plot(depths, [p[3] / 1e6 for p in fam], "o-", label=family)
        ax_m.plot(depths, [p[4] / 1e9 for p in fam], "o-", label=family)
        for p in fam:
            if (p[2], p[3]) in labelled:  # twins with identical counts: label the first only
                continue
            labelled.add((p[2], p[3]))
            ax_p.annotate(
                p[0], (p[2], p[3] / 1e6), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    for ax, ylabel in ((ax_p, "parameters (millions)"), (ax_m, "conv/linear MACs (G)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("depth (weighted layers)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    ax_p.set_title("Parameters against depth")
    ax_m.set_title("Multiply-adds against depth (one image, native size)")
    try:
        save_figure(fig, out)
    finally:
        plt.close(fig)
    return points
