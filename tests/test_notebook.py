"""At home in Jupyter: every analysis result shows itself as HTML or SVG, and the tutorial
notebook (docs/tutorial.ipynb) runs top to bottom in a real kernel with its key outputs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import torch
from torch import nn

from conftest import meta_model
from resnetlab.analysis import (
    MetricsTable,
    block_diagram,
    compare,
    diagram,
    efficiency,
    formulas,
    summarize,
    weights_table,
)
from resnetlab.runtime.counts import ConfusionMatrix


class Cells(HTMLParser):
    """The text of every table cell, in order (and a check that the HTML parses)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("td", "th"):
            self._in = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in = False

    def handle_data(self, data: str) -> None:
        if self._in:
            self.cells[-1] += data


def cells(html: str) -> list[str]:
    p = Cells()
    p.feed(html)
    return p.cells


def test_summary_html_has_every_row_and_the_totals() -> None:
    s = summarize(meta_model("resnet50"), (2, 3, 224, 224), depth=2, title="resnet50")
    got = cells(s._repr_html_())
    assert "25,557,032" in got and "7.72" in got
    assert "layer2" in got and "[2, 512, 28, 28]" in got
    assert got.count("Bottleneck") == sum(1 for r in s.rows if r.type == "Bottleneck")


def test_comparison_and_formula_tables() -> None:
    c = compare(*efficiency.first_layers(), title="First layers")
    got = cells(c._repr_html_())
    assert "260,160" in got and "9,472" in got
    assert "(3×64×7×7 + 64) = 9,472" in c._repr_html_()
    f = formulas(efficiency.ConvBlock())
    got = cells(f._repr_html_())
    assert got[-1] == "73,856" and "64×64×3×3 + 64" in got and f.total == 73_856
    assert isinstance(f, list)  # still the list it always was
    assert "3×64×7×7 + 64" in cells(formulas(nn.Conv2d(3, 64, 7))[0]._repr_html_())


def test_diagram_weights_and_evaluation_reprs() -> None:
    svg = diagram("resnet20")._repr_svg_()
    assert ET.fromstring(svg).tag.endswith("svg")
    assert "3×3 conv, 64" in block_diagram("basic")._repr_svg_()
    table = weights_table("resnet50*")
    assert len(table) >= 1
    got = cells(table._repr_html_())
    assert table[0].name in got and f"{table[0].num_params:,}" in got
    got = cells(MetricsTable({"top1": 0.875, "loss": 0.5})._repr_html_())
    assert got == ["Metric", "Value", "top1", "0.8750", "loss", "0.5000"]
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    assert "overall accuracy 66.67% of 3 samples" in cm._repr_html_()


def test_html_is_escaped() -> None:
    s = summarize(meta_model("resnet20"), (1, 3, 32, 32), title="<script>x</script>")
    assert "<script>" not in s._repr_html_()
