"""Side-by-side comparisons of named models or arbitrary modules: parameters,
multiply-adds, depth (weighted layers) and activation memory.

>>> table = compare("resnet18", "resnet34", "plain34")          # doctest: +SKIP
>>> print(table.to_text())                                       # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import torch
from torch import nn

from resnetlab.analysis.counting import LayerCall, totals, trace_calls
from resnetlab.analysis.formulas import total_formula
from resnetlab.analysis.html import html_table
from resnetlab.analysis.summary import MACS_CONVENTION, Format
from resnetlab.errors import InvalidValueError
from resnetlab.models.registry import build, model_spec
from resnetlab.models.spec import ResNetSpec

Item = str | nn.Module | tuple[str, nn.Module] | tuple[str, nn.Module, Sequence[int]]


@dataclass(frozen=True)
class CompareRow:
    label: str
    input_size: tuple[int, ...]
    params: int
    macs: int  # torchinfo convention, whole batch
    conv_macs: int  # conv/linear weights only
    depth: int  # conv + linear layers on the main path (shortcuts not counted)
    activation_bytes: int
    formula: str  # the parameter count as one sum (as a by-hand count writes it)


@dataclass(frozen=True)
class Comparison:
    rows: tuple[CompareRow, ...]
    title: str = "Comparison"

    def render(self, fmt: Format = "text", *, formulas: bool = False, notes: bool = True) -> str:
        """The table as text, Markdown (``md``), JSON or CSV; ``formulas`` adds each
        parameter count as a sum; ``notes=False`` drops the conventions paragraph."""
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        if fmt == "csv":
            return self.to_csv()
        return self.to_table(markdown=fmt == "md", formulas=formulas, notes=notes)

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        head = [
            "Model",
            "Input",
            "Params",
            "× first",
            "Mult-adds",
            "Conv/linear MACs",
            "Depth",
            "Fwd+bwd MB",
        ]
        base = self.rows[0].params or 1
        body = [
            [
                r.label,
                "×".join(map(str, r.input_size)),
                f"{r.params:,}",
                f"{r.params / base:.2f}",
                _giga(r.macs),
                _giga(r.conv_macs),
                str(r.depth),
                f"{r.activation_bytes / 1e6:,.2f}",
            ]
            for r in self.rows
        ]
        return head, body

    def to_table(
        self, *, markdown: bool = False, formulas: bool = False, notes: bool = True
    ) -> str:
        head, body = self._cells()
        lines: list[str] = []
        if markdown:
            lines += [f"### {self.title}", ""]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|---|---|" + "---:|" * (len(head) - 2))
            lines += ["| " + " | ".join(row) + " |" for row in body]
        else:
            widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]

            def fmt(cells: list[str]) -> str:
                first = f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}"
                rest = "  ".join(f"{c:>{w}}" for c, w in zip(cells[2:], widths[2:], strict=True))
                return f"{first}  {rest}"

            rule = "-" * len(fmt(head))
            lines += [self.title, rule, fmt(head), rule, *map(fmt, body), rule]
        if formulas:
            lines.append("")
            bullet = "- " if markdown else "  "
            lines += [f"{bullet}{r.label}: {r.formula}" for r in self.rows]
        if notes:
            lines += ["", DEPTH_NOTE + " " + MACS_CONVENTION]
        return "\n".join(lines) + "\n"

    def _repr_html_(self) -> str:
        """The table in a notebook, each count's formula under it where it was written."""
        head, body = self._cells()
        out = html_table(head, body, caption=self.title, numeric=range(2, len(head)))
        sums = [f"<li>{escape(r.label)}: {escape(r.formula)}</li>" for r in self.rows if r.formula]
        return out + (f"<ul>{''.join(sums)}</ul>" if sums else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "conventions": {"macs": MACS_CONVENTION},
            "rows": [
                {
                    "label": r.label,
                    "input_size": list(r.input_size),
                    "params": r.params,
                    "mult_adds": r.macs,
                    "conv_linear_macs": r.conv_macs,
                    "depth": r.depth,
                    "forward_backward_bytes": r.activation_bytes,
                    "formula": r.formula,
                }
                for r in self.rows
            ],
        }

    def to_csv(self) -> str:
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            [
                "label",
                "input_size",
                "params",
                "mult_adds",
                "conv_linear_macs",
                "depth",
                "forward_backward_bytes",
            ]
        )
        for r in self.rows:
            w.writerow(
                [
                    r.label,
                    "x".join(map(str, r.input_size)),
                    r.params,
                    r.macs,
                    r.conv_macs,
                    r.depth,
                    r.activation_bytes,
                ]
            )
        return buf.getvalue()


DEPTH_NOTE = "Depth = conv and linear layers on the main path (shortcuts not counted)."


def _giga(value: int) -> str:
    return f"{value / 1e9:.2f} G" if value >= 1e8 else f"{value / 1e6:.2f} M"


def _on_shortcut(name: str) -> bool:
    return any(part == "downsample" or "shortcut" in part for part in name.split("."))


def weighted_depth(calls: list[LayerCall]) -> int:
    """Conv and linear layer calls on the main path: the paper's "layers"."""
    return sum(
        1
        for c in calls
        if c.is_leaf and c.type in ("Conv2d", "Linear") and not _on_shortcut(c.name)
    )


def default_input_size(spec: object) -> tuple[int, int, int, int]:
    """One image at the model's native resolution: 32×32 for CIFAR nets, 224×224 else."""
    in_ch = getattr(spec, "in_channels", 3)
    side = 32 if isinstance(spec, ResNetSpec) and spec.stem == "cifar" else 224
    return (1, in_ch, side, side)


def _resolve(
    item: Item, input_size: Sequence[int] | None
) -> tuple[str, nn.Module, tuple[int, ...]]:
    if isinstance(item, str):
        spec = model_spec(item)
        with torch.device("meta"):  # counting needs shapes only, not weights
            module = build(spec)
        size = tuple(input_size) if input_size else default_input_size(spec)
        return item, module, size
    if isinstance(item, nn.Module):
        label, module, size_opt = type(item).__name__, item, input_size
    elif len(item) == 3:
        label, module, size_opt = item
    else:
        label, module = item
        size_opt = input_size
    if not size_opt:
        raise InvalidValueError(f"give an input size for {label!r} (it is not a named model)")
    return label, module, tuple(int(v) for v in size_opt)


resolve_item = _resolve  # (label, module, input size) of one item; diagrams take the same items


def compare(
    *items: Item, input_size: Sequence[int] | None = None, title: str = "Comparison"
) -> Comparison:
    """Compare models side by side.

    Each item is a registered model name, a module, ``(label, module)`` or
    ``(label, module, input_size)``. Named models default to one image at their native
    resolution; ``input_size`` overrides that for every item without its own size.
    """
    if not items:
        raise InvalidValueError("nothing to compare: give at least one model")
    rows = []
    for item in items:
        label, module, size = _resolve(item, input_size)
        calls = trace_calls(module, size)
        t = totals(module, size, calls)
        rows.append(
            CompareRow(
                label=label,
                input_size=size,
                params=t.params,
                macs=t.macs,
                conv_macs=t.conv_macs,
                depth=weighted_depth(calls),
                activation_bytes=t.activation_bytes,
                formula=total_formula(module) if t.params < 10_000_000 else "",
            )
        )
    return Comparison(tuple(rows), title)
