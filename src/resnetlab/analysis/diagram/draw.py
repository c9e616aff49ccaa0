"""Columns → a scene: the paper's Fig. 3 layout. Columns stand side by side, aligned by
output size (each band is as tall as its tallest column), output sizes on the left,
shortcut arcs on the right of each column: solid for an identity, dotted and labelled for a
projection ("proj") or option A's zero-padding ("pad")."""

from __future__ import annotations

import textwrap

from resnetlab.analysis.diagram.layout import Band, Column, Entry, Layer, Unit
from resnetlab.analysis.diagram.scene import Arc, Box, Line, Scene, Shape, Text

LEFT = 96  # room for the output-size labels
TOP = 58  # room for the titles
BOX_W = 196
BOX_H = 22
STEP = 30  # one box and the gap under it
PITCH = BOX_W + 120  # column to column: arcs and "×n" marks live in the gap
UNIT_GAP = 6
FOLD_PAD = 7
BAND_PAD = 14
ARC_BULGE = 44
# One colour per output size, light enough for black text (the paper colours its stages).
PALETTE = ("#f6d7a7", "#d8e9c3", "#cfe0f3", "#f3d1dc", "#e1d5f0", "#d5efe9", "#f0e6c8")
KIND_FILL = {"pool": "#ffffff", "fc": "#eeeeee"}
ARC_LABEL = {"projection": "proj", "zero-pad": "pad"}


def entry_height(e: Entry) -> float:
    if isinstance(e, Layer):
        return STEP
    pad = 2 * FOLD_PAD if e.repeat > 1 else 0
    return len(e.layers) * STEP + UNIT_GAP + pad


def band_order(columns: list[Column]) -> list[tuple[int, int]]:
    """Every output size of every column, largest first (Fig. 3's rows)."""
    sizes = {b.size for c in columns for b in c.bands}
    return sorted(sizes, key=lambda s: -(s[0] * s[1]))


def _layer_box(
    x: float, y: float, layer: Layer, fill: str, attrs: list[tuple[str, str]]
) -> list[Shape]:
    fill = KIND_FILL.get(layer.kind, fill)
    box_attrs = (("data-name", layer.name), ("data-kind", layer.kind), *attrs)
    return [
        Box(x, y, BOX_W, BOX_H, layer.kind, fill, tuple(box_attrs)),
        Text(x + BOX_W / 2, y + BOX_H / 2, layer.label, "label"),
    ]


def _unit(x: float, y: float, unit: Unit, fill: str, model: str) -> list[Shape]:
    shapes: list[Shape] = []
    top = y + (FOLD_PAD if unit.repeat > 1 else 0)
    repeat = str(unit.repeat)
    attrs = [("data-block", unit.names[0]), ("data-repeat", repeat), ("data-model", model)]
    if unit.repeat > 1:
        h = len(unit.layers) * STEP - (STEP - BOX_H) + 2 * FOLD_PAD
        shapes.append(Box(x - 6, y, BOX_W + 12, h, "fold", "none", tuple(attrs), dashed=True))
        shapes.append(Text(x - 12, y + h / 2, f"×{unit.repeat}", "repeat", 13, "end", bold=True))
    for i, layer in enumerate(unit.layers):
        shapes += _layer_box(x, top + i * STEP, layer, fill, attrs)
    if unit.shortcut is not None:
        y0 = top - 3
        y1 = top + len(unit.layers) * STEP - (STEP - BOX_H) + 3
        dashed = unit.shortcut != "identity"
        cls = f"arc {unit.shortcut}"
        arc_attrs = tuple(attrs)
        shapes.append(Arc(x + BOX_W, y0, y1, ARC_BULGE, cls, dashed, arc_attrs))
        if dashed:
            xm = x + BOX_W + ARC_BULGE * 0.75 + 4
            shapes.append(
                Text(xm, (y0 + y1) / 2, ARC_LABEL[unit.shortcut], "arc-label", 10, "start")
            )
    return shapes


def _column_band(
    x: float, y: float, band: Band, fill: str, model: str
) -> tuple[list[Shape], float]:
    shapes: list[Shape] = []
    for e in band.entries:
        if isinstance(e, Layer):
            shapes += _layer_box(x, y, e, fill, [("data-repeat", "1"), ("data-model", model)])
        else:
            shapes += _unit(x, y, e, fill, model)
        y += entry_height(e)
    return shapes, y


def draw_columns(columns: list[Column]) -> Scene:
    """Side by side, aligned by output size."""
    order = band_order(columns)
    heights = {
        size: max(
            sum(entry_height(e) for b in c.bands if b.size == size for e in b.entries)
            for c in columns
        )
        + BAND_PAD
        for size in order
    }
    width = LEFT + PITCH * len(columns) + 10
    chars = max(40, int((width - 20) / 5.8))  # a 10-pixel sans-serif letter is ~5.8 wide
    notes = [line for c in columns if c.folded for line in textwrap.wrap(c.folded, chars)]
    height = TOP + sum(heights.values()) + 20 + 18 * len(notes)
    scene = Scene(width, height)
    for i, c in enumerate(columns):
        cx = LEFT + i * PITCH + BOX_W / 2
        scene.add(Text(cx, 18, c.title, "title", 14, bold=True))
        scene.add(Text(cx, 36, "input " + "×".join(map(str, c.input_size)), "input", 10))
    y: float = TOP
    for k, size in enumerate(order):
        scene.add(Line(8, y - 6, width - 8, y - 6, "band", "#bbb", dashed=True))
        scene.add(Text(10, y + 8, "output size", "size-caption", 9, "start", colour="#666"))
        scene.add(Text(10, y + 22, f"{size[0]}×{size[1]}", "size", 12, "start", bold=True))
        fill = PALETTE[k % len(PALETTE)]
        for i, c in enumerate(columns):
            x = LEFT + i * PITCH
            for band in c.bands:
                if band.size == size:
                    shapes, _ = _column_band(x, y, band, fill, c.title)
                    scene.add(*shapes)
        y += heights[size]
    for i in range(len(columns)):  # the data path behind the boxes
        cx = LEFT + i * PITCH + BOX_W / 2
        scene.shapes.insert(0, Line(cx, TOP - 4, cx, y - BAND_PAD, "spine", "#999"))
    for j, note in enumerate(notes):
        scene.add(Text(10, y + 10 + 18 * j, note, "fold-note", 10, "start", colour="#555"))
    return scene
