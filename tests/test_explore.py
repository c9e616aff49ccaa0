"""``resnetlab explore``: one self-contained HTML page (diagram + layer tree), checked as
text and opened in headless Chromium (no console error, totals as ``summary`` prints them,
a click on a box opens its block's layers, a non-blank screenshot)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from browser import dump_dom, needs_chromium, screenshot_colours
from conftest import assert_refused_in_one_line, cli, meta_model
from resnetlab.analysis import summarize
from resnetlab.analysis.explorer import explore_page

SVG_NS = "http://www.w3.org/2000/svg"


class Page(HTMLParser):
    """Totals cells, tree nodes (and which are open), resource references."""

    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[tuple[str, str], str] = {}
        self.nodes: dict[tuple[str, str], dict[str, str | None]] = {}
        self.refs: list[str] = []
        self.body: dict[str, str | None] = {}
        self.sections: dict[str, dict[str, str | None]] = {}
        self._pane = ""
        self._total: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "section":
            self._pane = a.get("data-pane") or ""
            self.sections[self._pane] = a
        if "data-node" in a:
            self.nodes[(self._pane, a["data-node"] or "")] = {"tag": tag, **a}
        if "data-total" in a:
            self._total = a["data-total"]
        for key in ("src", "href"):
            if a.get(key):
                self.refs.append(a[key] or "")

    def handle_data(self, data: str) -> None:
        if self._total is not None:
            self.totals[(self._pane, self._total)] = data
            self._total = None


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    return p


def footer(name: str) -> dict[str, str]:
    from resnetlab.analysis.compare import default_input_size
    from resnetlab.models import model_spec

    s = summarize(meta_model(name), default_input_size(model_spec(name)), title=name)
    return dict(s._footer())


def test_page_is_self_contained_with_summary_totals() -> None:
    html = explore_page("resnet20")
    page = parse(html)
    assert page.refs == []  # no script, style or image from anywhere
    assert re.findall(r"https?://[^\s\"'<>]+", html) == [SVG_NS] * html.count(SVG_NS)
    want = footer("resnet20")
    assert {k: v for (pane, k), v in page.totals.items()} == want
    assert want["Total params"] == "269,722"
    # The tree: every stage, block and layer, with the formula of each count.
    assert ("0", "layer2.0.conv1") in page.nodes and page.nodes[("0", "layer2")]["tag"] == "details"
    assert "16×32×3×3 = 4,608" in html


def test_two_models_mark_their_differences() -> None:
    page = parse(explore_page("resnet50", "resnet50_v1_5"))
    assert page.totals[("0", "Total params")] == page.totals[("1", "Total params")] == "25,557,032"
    assert page.totals[("0", "Conv/linear MACs (G)")] == footer("resnet50")["Conv/linear MACs (G)"]
    assert (
        page.totals[("1", "Conv/linear MACs (G)")]
        == footer("resnet50_v1_5")["Conv/linear MACs (G)"]
    )
    html = explore_page("resnet50", "resnet50_v1_5")
    marks = re.search(r'id="explorer-data">(.*?)</script>', html)
    assert marks is not None
    import json

    data = json.loads(marks.group(1))["marks"]
    # v1.5 moves the stride from the 1×1 to the 3×3: exactly those convs' outputs differ.
    for pane in ("0", "1"):  # conv1: output size and stride; conv2: stride (same output)
        assert data[pane]["layer2.0.conv1"] == data[pane]["layer2.0.conv2"] == "diff"
    assert "layer1.0.conv1" not in data["0"] and "layer2.1.conv1" not in data["0"]
    plain = json.loads(
        re.findall(r'id="explorer-data">(.*?)</script>', explore_page("resnet20", "plain20"))[0]
    )
    assert plain["marks"]["0"]["layer2.0.downsample"] == "only"  # option A's pad: residual only


def test_cli_writes_the_page(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    code, stdout, _ = cli(capsys, "explore", "resnet20", "plain20", "-o", str(out))
    assert code == 0 and stdout == f"wrote {out}\n"
    assert parse(out.read_text()).totals[("1", "Total params")] == "269,722"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["explore", "resnet20", "resnet32", "resnet44"], "one model or two"),
        (["explore", "resnet51"], "unknown model 'resnet51'"),
        (["explore", "resnet20", "-o", "page.svg"], "must end in .html"),
        (["explore", "resnet20", "--input-size", "1", "4", "32", "32"], "does not fit"),
    ],
)
def test_bad_input_one_line_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    needle: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_refused_in_one_line(capsys, tmp_path, argv, needle)


@needs_chromium
def test_explorer_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "explore.html"
    page.write_text(explore_page("resnet34", "plain34"))
    # "#open=layer2.0" clicks that block's box in the diagram once the page has loaded.
    url = page.resolve().as_uri() + "#open=layer2.0"
    dom = dump_dom(url, tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    seen = parse(dom.stdout)
    assert seen.body.get("data-ready") == "1" and seen.body.get("data-errors") == "0"
    for pane, name in (("0", "resnet34"), ("1", "plain34")):
        want = footer(name)
        assert {k: v for (p, k), v in seen.totals.items() if p == pane} == want
    # The click opened layer2.0 (and its stage) in the pane whose box was clicked.
    assert seen.sections["0"].get("data-opened") == "layer2.0"
    assert "open" in seen.nodes[("0", "layer2")] and "open" in seen.nodes[("0", "layer2.0")]
    assert "open" not in seen.nodes[("0", "layer3")]
    for layer in ("conv1", "bn1", "relu1", "conv2", "bn2"):
        assert ("0", f"layer2.0.{layer}") in seen.nodes
    assert "hit" in (seen.nodes[("0", "layer2.0")].get("class") or "")

    colours = screenshot_colours(url, tmp_path / "profile", 1400, 1000)
    assert colours is None or colours > 50  # diagram, tree and text, not a blank page
