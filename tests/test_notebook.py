"""At home in Jupyter: every analysis result shows itself as HTML or SVG, and the tutorial
notebook (docs/tutorial.ipynb) runs top to bottom in a real kernel with its key outputs."""

from __future__ import annotations

import json
import re
import sys
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
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
from resnetlab.runtime.metrics import ConfusionMatrix


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


# ---------------------------------------------------------------------- the tutorial notebook
NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "tutorial.ipynb"


def _text(cell: Any) -> str:
    """Everything a code cell showed: streams, plain text, HTML and SVG."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        for kind in ("text/plain", "text/html", "image/svg+xml"):
            value = out.get("data", {}).get(kind)
            if value:
                parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)


def _has_png(cell: Any) -> bool:
    return any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def check_outputs(nb: Any) -> None:
    code = [c for c in nb.cells if c.cell_type == "code"]
    shown = [_text(c) for c in code]
    everything = "\n".join(shown)
    assert "25,557,032 parameters, 7.72 G mult-adds" in everything
    for number in ("260,160", "9,472", "73,856", "45,248", "57,728"):
        assert number in everything, number
    fig3 = next(t for t in shown if "vgg19 | plain34 | resnet34" in t)
    assert "3×3 conv, 128, /2" in fig3 and "<svg" in fig3
    assert "plain56   training error  47.48%" in everything  # from docs/results/degradation
    assert sum(_has_png(c) for c in code) >= 2  # the committed curves and the depth chart
    assert "in_features=200, out_features=10" in everything  # the custom head
    assert re.search(r"test top-1 \d+\.\d% on 300 images", everything)
    assert "of 300 samples" in everything  # the confusion matrix of the evaluation


def test_committed_notebook_has_its_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
    check_outputs(nb)


def test_notebook_runs_top_to_bottom_in_a_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # A kernel of this very interpreter (the venv), registered for this test only.
    spec = tmp_path / "kernels" / "resnetlab-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "t", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    client = nbclient.NotebookClient(
        nb,
        timeout=240,
        kernel_name="resnetlab-test",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    check_outputs(nb)
    assert elapsed < 120, f"the tutorial took {elapsed:.0f} s; it must stay under two minutes"
