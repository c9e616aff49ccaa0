"""One block drawn alone, as the paper's Fig. 2 and Fig. 5 draw it: every layer of the
residual branch (conv, BN, ReLU) in the order it runs, the addition, the shortcut beside
it, and the parameter count with the formula behind each layer's share, as
``resnetlab params --formulas`` prints it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from resnetlab.analysis.counting import trace_calls
from resnetlab.analysis.diagram.layout import conv_label
from resnetlab.analysis.diagram.scene import Arc, Box, Line, Scene, Text
from resnetlab.analysis.formulas import formulas, param_formula
from resnetlab.errors import InvalidValueError
from resnetlab.models.blocks import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ResidualUnit,
    ZeroPadShortcut,
)


@dataclass(frozen=True)
class BlockKind:
    description: str
    build: Callable[[], ResidualUnit]
    input_size: tuple[int, ...]


BLOCKS: dict[str, BlockKind] = {
    "basic": BlockKind(
        "basic block, 64-d, identity shortcut (Fig. 2, Fig. 5 left)",
        lambda: BasicBlock(64, 64),
        (1, 64, 56, 56),
    ),
    "basic-projection": BlockKind(
        "downsampling basic block, 64→128, /2, projection shortcut (option B)",
        lambda: BasicBlock(64, 128, stride=2),
        (1, 64, 56, 56),
    ),
    "basic-zero-pad": BlockKind(
        "CIFAR downsampling block, 16→32, /2, zero-padding shortcut (option A)",
        lambda: BasicBlock(16, 32, stride=2, shortcut="A"),
        (1, 16, 32, 32),
    ),
    "plain": BlockKind(
        "plain block, 64-d: the basic block without its shortcut",
        lambda: BasicBlock(64, 64, residual=False),
        (1, 64, 56, 56),
    ),
    "bottleneck": BlockKind(
        "bottleneck, 256-d, identity shortcut (Fig. 5 right)",
        lambda: Bottleneck(256, 64),
        (1, 256, 56, 56),
    ),
    "bottleneck-projection": BlockKind(
        "downsampling bottleneck, 256→512, /2 on the first 1×1 (paper), projection shortcut",
        lambda: Bottleneck(256, 128, stride=2),
        (1, 256, 56, 56),
    ),
    "preact-basic": BlockKind(
        "pre-activation basic block, 64-d (He et al. 2016)",
        lambda: PreActBasicBlock(64, 64),
        (1, 64, 56, 56),
    ),
    "preact-bottleneck": BlockKind(
        "pre-activation bottleneck, 256-d (He et al. 2016)",
        lambda: PreActBottleneck(256, 64),
        (1, 256, 56, 56),
    ),
    "resnext": BlockKind(
        "ResNeXt bottleneck, 256-d, 32 groups of 4 channels (Xie et al. 2017)",
        lambda: Bottleneck(256, 64, groups=32, width_per_group=4),
        (1, 256, 56, 56),
    ),
}

BOX_W = 170
X = 70
STEP = 28
BOX_H = 20
FILL = {"conv": "#cfe0f3", "bn": "#f6d7a7", "relu": "#d8e9c3", "add": "#ffffff"}


def block_module(kind: str) -> tuple[ResidualUnit, BlockKind]:
    if kind not in BLOCKS:
        raise InvalidValueError(f"unknown block {kind!r}; choose from {', '.join(BLOCKS)}")
    entry = BLOCKS[kind]
    return entry.build(), entry


def _branch(block: ResidualUnit, size: tuple[int, ...]) -> list[tuple[str, str, str]]:
    """``(kind, label, formula)`` for each branch layer in call order, and the addition."""
    modules = dict(block.named_modules())
    rows: list[tuple[str, str, str]] = []
    for c in trace_calls(block, size):
        if not c.is_leaf or c.name.split(".")[0] == "downsample":
            continue
        m = modules[c.name]
        f = param_formula(c.name, m)
        formula = f.text if f else ""
        if isinstance(m, nn.Conv2d):
            rows.append(("conv", conv_label(m), formula))
        elif isinstance(m, nn.BatchNorm2d):
            rows.append(("bn", "BN", formula))
        elif isinstance(m, nn.ReLU):
            rows.append(("relu", "ReLU", ""))
    if block.residual:
        # A post-activation block adds before its last ReLU; a pre-activation one adds last.
        at = len(rows) - 1 if isinstance(block, BasicBlock | Bottleneck) else len(rows)
        rows.insert(at, ("add", "+", ""))
    return rows


def _shortcut_label(block: ResidualUnit) -> tuple[str, bool]:
    ds = block.downsample
    if ds is None:
        return "identity x", False
    if isinstance(ds, ZeroPadShortcut):
        return f"zero-pad {ds.in_channels}→{ds.out_channels}, /{ds.stride}", True
    convs = [m for m in ds.modules() if isinstance(m, nn.Conv2d)]
    bn = " + BN" if any(isinstance(m, nn.BatchNorm2d) for m in ds.modules()) else ""
    return f"projection: {conv_label(convs[0])}{bn}", True


def draw_block(kind: str) -> tuple[Scene, str]:
    """The block named ``kind`` (see :data:`BLOCKS`) and its title."""
    block, entry = block_module(kind)
    rows = _branch(block, entry.input_size)
    lines = formulas(block)
    total = sum(f.count for f in lines)
    name_w = max(len(f.name) for f in lines)
    text_lines = [f"{f.name:<{name_w}}  {f.text}" for f in lines]
    text_lines.append(f"{'total':<{name_w}}  {total:,}")
    top = 64
    height = top + STEP * (len(rows) + 1) + 30 + 15 * len(text_lines) + 20
    width = 720
    scene = Scene(width, height)
    scene.add(Text(10, 16, f"{kind}: {entry.description}", "title", 13, "start", bold=True))
    chans = entry.input_size[1]
    scene.add(Text(X + BOX_W / 2, 44, f"x: {chans}-d input", "input", 11))
    cx = X + BOX_W / 2
    y_end = top + STEP * len(rows)
    scene.add(Line(cx, 52, cx, y_end + 6, "spine", "#999"))
    add_y = None
    for i, (k, label, formula) in enumerate(rows):
        y = top + i * STEP
        scene.add(
            Box(X, y, BOX_W, BOX_H, k, FILL[k], (("data-kind", k),), radius=10 if k == "add" else 3)
        )
        scene.add(Text(cx, y + BOX_H / 2, label, "label", 11))
        if formula:
            scene.add(Text(X + BOX_W + 250, y + BOX_H / 2, formula, "formula", 10, "start"))
        if k == "add":
            add_y = y + BOX_H / 2
    if add_y is not None:
        label, dashed = _shortcut_label(block)
        cls = "arc " + (
            "identity" if not dashed else "projection" if "proj" in label else "zero-pad"
        )
        scene.add(Arc(X + BOX_W, 52, add_y, 70, cls, dashed))
        scene.add(Text(X + BOX_W + 60, (52 + add_y) / 2, label, "arc-label", 10, "start"))
    y = y_end + 30
    scene.add(
        Text(10, y, f"{total:,} parameters (params --formulas):", "total", 11, "start", bold=True)
    )
    for j, line in enumerate(text_lines):
        scene.add(Text(10, y + 18 + 15 * j, line, "formula-line", 10, "start", mono=True))
    return scene, f"{kind}: {total:,} parameters"
