"""Architecture diagrams drawn from the model itself, in the style of the paper's figures.

>>> d = diagram("vgg19", "plain34", "resnet34")   # Fig. 3                # doctest: +SKIP
>>> d.save("fig3.svg")                                                  # doctest: +SKIP
>>> block_diagram("bottleneck").save("fig5.png")   # Fig. 5, right      # doctest: +SKIP

A :class:`Diagram` shows itself inline in Jupyter (``_repr_svg_``). The SVG is written by
hand (every label a ``<text>`` element: searchable and selectable); PNG goes through
matplotlib from the same shapes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from resnetlab.analysis.compare import Item, default_input_size, resolve_item
from resnetlab.analysis.diagram.block import BLOCKS, draw_block
from resnetlab.analysis.diagram.draw import draw_columns
from resnetlab.analysis.diagram.layout import (
    FOLD_ABOVE,
    Band,
    Column,
    Layer,
    Unit,
    check_drawable,
    column,
)
from resnetlab.analysis.diagram.scene import Scene, save, to_svg
from resnetlab.errors import InvalidValueError


@dataclass(frozen=True)
class Diagram:
    """A drawn diagram: its shapes, the columns behind them (empty for a single block) and
    a note per column that was folded."""

    title: str
    scene: Scene
    columns: tuple[Column, ...] = ()

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(c.folded for c in self.columns if c.folded)

    def to_svg(self) -> str:
        return to_svg(self.scene, title=self.title)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``.svg`` or ``.png`` (by the suffix), atomically."""
        return save(self.scene, path, title=self.title)

    def _repr_svg_(self) -> str:
        return self.to_svg()


def diagram(
    *items: Item, input_size: Sequence[int] | None = None, fold: bool | None = None
) -> Diagram:
    """Draw one model as its Fig. 3 column, or several side by side aligned by output size.

    Items are as for :func:`~resnetlab.analysis.compare.compare`: a registered name, a
    module, ``(label, module)`` or ``(label, module, input_size)``. Only resnetlab ResNets
    and VGGs can be drawn (a ``ValueError`` says so for anything else). ``fold``: see
    :func:`~resnetlab.analysis.diagram.layout.column`.
    """
    if not items:
        raise InvalidValueError("nothing to draw: give at least one model")
    cols = []
    for item in items:
        label, module, size = resolve_item(_with_size(item, input_size), input_size)
        cols.append(column(module, size, title=label, fold=fold))
    title = " | ".join(c.title for c in cols)
    return Diagram(title, draw_columns(cols), tuple(cols))


def _with_size(item: Item, input_size: Sequence[int] | None) -> Item:
    """A bare module: refused at once if it cannot be drawn; a resnetlab model without an
    input size gets its native one (one 224×224 image, 32×32 for CIFAR nets)."""
    module = item if isinstance(item, nn.Module) else None
    if isinstance(item, tuple) and len(item) == 2:
        module = item[1]
    if module is None:
        return item
    check_drawable(module)
    if input_size is not None or (isinstance(item, tuple) and len(item) == 3):
        return item
    label = item[0] if isinstance(item, tuple) else type(module).__name__
    return (label, module, default_input_size(module.spec))


def block_diagram(kind: str) -> Diagram:
    """One block alone (Fig. 2 / Fig. 5): ``kind`` is a key of :data:`BLOCKS`."""
    scene, title = draw_block(kind)
    return Diagram(title, scene)


__all__ = [
    "BLOCKS",
    "FOLD_ABOVE",
    "Band",
    "Column",
    "Diagram",
    "Layer",
    "Unit",
    "block_diagram",
    "column",
    "diagram",
]
