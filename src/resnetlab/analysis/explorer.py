"""``explore_page(model[, model2])``: one self-contained HTML page to explore a network.

Beside the diagram (:mod:`resnetlab.analysis.diagram`), the layer tree folded by stage and
block, each row with its output shape, parameters, mult-adds and the formula behind its
count (:mod:`resnetlab.analysis.formulas`); a click on a box opens its rows. With a second
model the two stand side by side and every layer that differs (type, output shape,
parameters or mult-adds) or exists in one only is marked, in the tree and in the diagram.
Totals are :func:`~resnetlab.analysis.summary.summarize`'s. No network: style, script and
drawing are inline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape

from torch import nn

from resnetlab.analysis.compare import Item, resolve_item
from resnetlab.analysis.counting import LayerCall
from resnetlab.analysis.diagram import diagram
from resnetlab.analysis.explorer_assets import SCRIPT, STYLE
from resnetlab.analysis.formulas import param_formula
from resnetlab.analysis.summary import MACS_CONVENTION, Summary, summarize
from resnetlab.errors import InvalidValueError

HEAD = ("Layer", "Type", "Output shape", "Params", "Mult-adds", "Formula")


def _shape(shape: tuple[int, ...] | None) -> str:
    return "--" if shape is None else "×".join(map(str, shape))


def _count(value: int) -> str:
    return f"{value:,}" if value else "--"


def _cells(call: LayerCall, formula: str) -> str:
    short = call.name.rsplit(".", 1)[-1]
    return (
        f'<span class="name" title="{escape(call.name)}">{escape(short)}</span>'
        f"<span>{escape(call.type)}</span><span>{_shape(call.output_shape)}</span>"
        f'<span class="num">{_count(call.params)}</span>'
        f'<span class="num">{_count(call.macs)}</span>'
        f'<span class="formula">{escape(formula)}</span>'
    )


def tree_html(model: nn.Module, summary: Summary) -> str:
    """Nested ``<details>``: top-level parts (stem layers, stages, head), blocks, layers."""
    modules = dict(model.named_modules())
    out = ['<div class="row head">' + "".join(f"<span>{h}</span>" for h in HEAD) + "</div>"]
    open_depths: list[int] = []
    for call in summary.calls:
        if call.depth == 0:
            continue
        while open_depths and open_depths[-1] >= call.depth:
            open_depths.pop()
            out.append("</details>")
        node = escape(call.name)
        if call.is_leaf:
            f = param_formula(call.name, modules[call.name]) if call.name in modules else None
            formula = f.text if f else ""
            out.append(f'<div class="row" data-node="{node}">{_cells(call, formula)}</div>')
        else:
            formula = f"{call.params:,} in all" if call.params else ""
            out.append(f'<details data-node="{node}"><summary>{_cells(call, formula)}</summary>')
            open_depths.append(call.depth)
    out += ["</details>"] * len(open_depths)
    return "\n".join(out)


def _totals_html(summary: Summary) -> str:
    rows = "".join(
        f'<tr><td>{escape(k)}</td><td class="num" data-total="{escape(k)}">{escape(v)}</td></tr>'
        for k, v in summary._footer()
    )
    return f'<table class="totals">{rows}</table>'


def _signatures(model: nn.Module, summary: Summary) -> dict[str, tuple[object, ...]]:
    """What must agree for a layer to count as the same: type, output shape, parameters,
    mult-adds, and for a leaf its settings (a conv's stride, kernel, …, as PyTorch prints)."""
    modules = dict(model.named_modules())
    return {
        c.name: (
            c.type,
            c.output_shape,
            c.params,
            c.macs,
            repr(modules[c.name]) if c.is_leaf and c.name in modules else "",
        )
        for c in summary.calls
        if c.depth > 0
    }


def differences(
    a: dict[str, tuple[object, ...]], b: dict[str, tuple[object, ...]]
) -> tuple[dict[str, str], dict[str, str]]:
    """Per pane, ``{layer name: "diff" | "only"}`` for every layer that is not the same in
    both models (see :func:`_signatures`) or exists in one only."""

    def marks(
        mine: dict[str, tuple[object, ...]], other: dict[str, tuple[object, ...]]
    ) -> dict[str, str]:
        return {
            n: ("only" if n not in other else "diff") for n, s in mine.items() if other.get(n) != s
        }

    return marks(a, b), marks(b, a)


def _pane(index: int, label: str, model: nn.Module, size: tuple[int, ...], summary: Summary) -> str:
    svg = diagram((label, model, size)).to_svg()
    svg = svg.split("\n", 1)[1] if svg.startswith("<?xml") else svg
    notes = "".join(f"<li>{escape(n)}</li>" for n in summary.notes)
    return (
        f'<section class="model" data-pane="{index}" data-model="{escape(label)}">'
        f"<h2>{escape(label)} <small>input {_shape(size)}</small></h2>"
        f'<ul class="notes">{notes}</ul>{_totals_html(summary)}'
        f'<div class="pane"><div class="diagram">{svg}</div>'
        f'<div class="tree">{tree_html(model, summary)}</div></div></section>'
    )


def explore_page(*items: Item, input_size: Sequence[int] | None = None) -> str:
    """The page for one model or two (items as for :func:`~resnetlab.analysis.compare.compare`)."""
    if not 1 <= len(items) <= 2:
        raise InvalidValueError(f"explore shows one model or two side by side, got {len(items)}")
    resolved = [resolve_item(item, input_size) for item in items]
    summaries = [summarize(m, size, depth=99, title=label) for label, m, size in resolved]
    marks: dict[str, dict[str, str]] = {}
    if len(resolved) == 2:
        sig = [_signatures(m, s) for (_, m, _), s in zip(resolved, summaries, strict=True)]
        marks["0"], marks["1"] = differences(sig[0], sig[1])
    title = " vs ".join(label for label, _, _ in resolved)
    panes = "".join(
        _pane(i, label, m, size, s)
        for i, ((label, m, size), s) in enumerate(zip(resolved, summaries, strict=True))
    )
    legend = ""
    if marks:
        n = len(marks["0"]) + len(marks["1"])
        legend = (
            f'<p class="legend">{n} layer rows differ: <span class="diff">differs</span>'
            '<span class="only">in one model only</span></p>'
        )
    payload = json.dumps({"marks": marks}).replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>resnetlab explore: {escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>resnetlab explore: {escape(title)}</h1>"
        '<p class="conventions">Click a box of the diagram to open its rows. '
        f"{escape(MACS_CONVENTION)}</p>{legend}"
        f'<div class="models">{panes}</div>'
        f'<script type="application/json" id="explorer-data">{payload}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )
