"""``summarize(model, input_size)``: the per-layer table of a model, as torchinfo prints it,
with the totals, memory estimates and the conventions behind every number.

Rows are module *calls* in execution order. Parameter totals and output shapes agree with
torchinfo 1.8; "Mult-adds" follow torchinfo's convention and the conv/linear MACs line
agrees with ``torch.utils.flop_counter`` (see :mod:`resnetlab.analysis.counting`).
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from dataclasses import dataclass
from html import escape
from typing import Any, Literal

import torch
from torch import nn

from resnetlab.analysis.counting import LayerCall, Totals, totals, trace_calls
from resnetlab.analysis.html import html_table
from resnetlab.errors import InvalidValueError
from resnetlab.models.resnet import ResNet
from resnetlab.models.vgg import VGG

Format = Literal["text", "md", "json", "csv"]
FORMATS: tuple[Format, ...] = ("text", "md", "json", "csv")

MACS_CONVENTION = (
    "Mult-adds follow torchinfo's convention: each weight/bias element times the output "
    "positions it applies to (convolutions: N×H×W; linear and BN: N), whole batch. "
    "Conv/linear MACs count convolution and linear weights only, as "
    "torch.utils.flop_counter does (its FLOPs / 2) and as the paper's Table 1 does."
)
MEMORY_CONVENTION = (
    "Memory (MB = 10^6 bytes, float32): forward/backward = outputs of every layer with "
    "parameters ×2 for their gradients (torchinfo's estimate)."
)


@dataclass(frozen=True)
class Row:
    """One displayed row of the table."""

    name: str
    type: str
    depth: int
    output_shape: tuple[int, ...] | None
    params: int | None  # None: shown as "--" (a container whose children are listed)
    macs: int | None
    trainable: bool


@dataclass(frozen=True)
class Summary:
    """A model's layer table for one input size. Render with :meth:`render`."""

    title: str
    input_size: tuple[int, ...]
    depth: int
    calls: tuple[LayerCall, ...]
    totals: Totals
    notes: tuple[str, ...]

    @property
    def rows(self) -> list[Row]:
        """Calls down to ``depth``; a row at the depth limit aggregates its subtree, as
        torchinfo does; a container whose children are shown gets "--"."""
        rows: list[Row] = []
        for c in self.calls:
            if c.depth > self.depth or c.depth == 0:
                continue
            shown_whole = c.is_leaf or c.depth == self.depth
            params: int | None = c.params if shown_whole else None
            if c.recursive:
                params = None
            macs = c.macs if shown_whole and c.macs > 0 else None
            rows.append(Row(c.name, c.type, c.depth, c.output_shape, params, macs, c.trainable > 0))
        return rows

    def render(self, fmt: Format = "text") -> str:
        if fmt == "text":
            return self.to_text()
        if fmt == "md":
            return self.to_markdown()
        if fmt == "json":
            return self.to_json()
        if fmt == "csv":
            return self.to_csv()
        raise InvalidValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")

    # ------------------------------------------------------------------ renderers
    def _footer(self) -> list[tuple[str, str]]:
        t = self.totals
        return [
            ("Total params", f"{t.params:,}"),
            ("Trainable params", f"{t.trainable:,}"),
            ("Non-trainable params", f"{t.non_trainable:,}"),
            ("Total mult-adds (G)", f"{t.macs / 1e9:.2f}"),
            ("Conv/linear MACs (G)", f"{t.conv_macs / 1e9:.2f}"),
            ("Input size (MB)", f"{t.input_bytes / 1e6:.2f}"),
            ("Forward/backward pass size (MB)", f"{t.activation_bytes / 1e6:.2f}"),
            ("Params size (MB)", f"{t.param_bytes / 1e6:.2f}"),
            ("Estimated Total Size (MB)", f"{t.total_bytes / 1e6:.2f}"),
        ]

    def to_text(self) -> str:
        rows = self.rows
        labels = [("  " * (r.depth - 1)) + f"{r.name.rsplit('.', 1)[-1]} ({r.type})" for r in rows]
        root = next(c for c in self.calls if c.depth == 0)
        head = ("Layer (name (type))", "Output Shape", "Param #", "Mult-Adds")
        table = [(f"{self.title} ({root.type})", _shape(root.output_shape), "--", "--")]
        table += [
            (lab, _shape(r.output_shape), _num(r.params, r.trainable), _num(r.macs, True))
            for lab, r in zip(labels, rows, strict=True)
        ]
        widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(head)]
        line_w = sum(widths) + 3 * 3

        def fmt_row(cells: tuple[str, ...]) -> str:
            return (
                f"{cells[0]:<{widths[0]}}   {cells[1]:<{widths[1]}}   "
                f"{cells[2]:>{widths[2]}}   {cells[3]:>{widths[3]}}"
            )

        out = ["=" * line_w, fmt_row(head), "=" * line_w, *map(fmt_row, table), "=" * line_w]
        out += [f"{k}: {v}" for k, v in self._footer()]
        out.append("=" * line_w)
        out += [f"Input: {_shape(self.input_size)}", *self.notes]
        out += _wrap(MACS_CONVENTION, line_w) + _wrap(MEMORY_CONVENTION, line_w)
        return "\n".join(out) + "\n"

    def to_markdown(self) -> str:
        out = [f"### {self.title}, input {_shape(self.input_size)}", ""]
        out += [f"- {n}" for n in self.notes]
        out += [
            "",
            "| Layer | Type | Output shape | Params | Mult-adds |",
            "|---|---|---|---:|---:|",
        ]
        for r in self.rows:
            indent = "&nbsp;&nbsp;" * (r.depth - 1)
            out.append(
                f"| {indent}`{r.name}` | {r.type} | {_shape(r.output_shape)} | "
                f"{_num(r.params, r.trainable)} | {_num(r.macs, True)} |"
            )
        out += ["", "| Total | |", "|---|---:|"]
        out += [f"| {k} | {v} |" for k, v in self._footer()]
        out += ["", MACS_CONVENTION, "", MEMORY_CONVENTION]
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict[str, Any]:
        t = self.totals
        return {
            "model": self.title,
            "input_size": list(self.input_size),
            "depth": self.depth,
            "notes": list(self.notes),
            "conventions": {"macs": MACS_CONVENTION, "memory": MEMORY_CONVENTION},
            "totals": {
                "params": t.params,
                "trainable_params": t.trainable,
                "non_trainable_params": t.non_trainable,
                "mult_adds": t.macs,
                "conv_linear_macs": t.conv_macs,
                "input_bytes": t.input_bytes,
                "forward_backward_bytes": t.activation_bytes,
                "param_bytes": t.param_bytes,
                "total_bytes": t.total_bytes,
            },
            "layers": [
                {
                    "name": r.name,
                    "type": r.type,
                    "depth": r.depth,
                    "output_shape": list(r.output_shape) if r.output_shape else None,
                    "params": r.params,
                    "mult_adds": r.macs,
                }
                for r in self.rows
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def _repr_html_(self) -> str:
        """The table in a notebook: layers indented by nesting, then the totals."""
        rows = self.rows
        body = [
            [
                r.name,
                r.type,
                _shape(r.output_shape),
                _num(r.params, r.trainable),
                _num(r.macs, True),
            ]
            for r in rows
        ]
        head = ("Layer", "Type", "Output shape", "Params", "Mult-adds")
        caption = f"{self.title}, input {_shape(self.input_size)}"
        layers = html_table(
            head, body, caption=caption, numeric=(3, 4), indent=[r.depth - 1 for r in rows]
        )
        footer = html_table(("Total", ""), self._footer(), numeric=(1,))
        notes = "".join(f"<li>{escape(n)}</li>" for n in self.notes)
        return f"{layers}{footer}<ul>{notes}</ul><p>{escape(MACS_CONVENTION)}</p>"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", "type", "depth", "output_shape", "params", "mult_adds"])
        for r in self.rows:
            shape = "x".join(map(str, r.output_shape)) if r.output_shape else ""
            w.writerow([r.name, r.type, r.depth, shape, _csv(r.params), _csv(r.macs)])
        return buf.getvalue()


def _shape(shape: tuple[int, ...] | None) -> str:
    return "--" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def _num(value: int | None, trainable: bool) -> str:
    if not value:  # None or 0: torchinfo prints "--" for both
        return "--"
    return f"{value:,}" if trainable else f"({value:,})"


def _csv(value: int | None) -> str:
    return "" if value is None else str(value)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width=max(width, 60))


def describe(model: nn.Module) -> tuple[str, ...]:
    """One line per fact a reader needs to interpret the table (placement, shortcuts, …)."""
    if isinstance(model, ResNet):
        s = model.spec
        kind = "pre-activation " if s.preact else ""
        kind += "residual" if s.residual else "plain"
        notes = [
            f"Architecture: {kind} network, {s.block} blocks {list(s.layers)}, "
            f"{s.depth} weighted layers, {s.stem} stem",
            f"Stride placement: {s.placement_note}",
            f"Shortcuts: {s.shortcut_note}",
        ]
        if s.groups > 1 or s.width_per_group != 64:
            notes.append(f"Grouped/wide: groups={s.groups}, width_per_group={s.width_per_group}")
        if s.kernel_size != 3:
            notes.append(f"Middle kernel size: {s.kernel_size}×{s.kernel_size}")
        if s.head == "mlp":
            notes.append(
                f"Head: GAP → Dropout({s.head_dropout}) → Linear({s.head_hidden}) → ReLU → "
                f"Dropout({s.head_dropout}) → Linear({s.num_classes}) (the Keras fine-tuning head)"
            )
        return tuple(notes)
    if isinstance(model, VGG):
        bn = " with BN" if model.spec.batch_norm else ""
        return (f"Architecture: VGG-{model.spec.depth}{bn}, Simonyan & Zisserman 2015",)
    return ()


def summarize(
    model: nn.Module,
    input_size: tuple[int, ...] | list[int],
    *,
    depth: int = 3,
    title: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Summary:
    """Trace one forward pass of ``model`` on zeros of ``input_size`` (e.g. ``(2, 3, 224,
    224)``) and return its layer table down to nesting ``depth``.

    The model runs on its own device, in eval mode, without gradients, and is left as it
    was. On the ``meta`` device nothing is computed, so any model summarises instantly.
    Raises :class:`~resnetlab.analysis.counting.ShapeError` if the input does not fit.
    """
    size = tuple(int(v) for v in input_size)
    if not size or any(v < 1 for v in size):
        raise InvalidValueError(f"input size must be positive integers, got {list(input_size)}")
    if depth < 1:
        raise InvalidValueError(f"depth must be at least 1, got {depth}")
    calls = trace_calls(model, size, dtype=dtype)
    return Summary(
        title=title or type(model).__name__,
        input_size=size,
        depth=depth,
        calls=tuple(calls),
        totals=totals(model, size, calls),
        notes=describe(model),
    )
