"""Architecture diagrams (the paper's Fig. 2, 3, 5) drawn from the spec: the tests read the
SVG back and check it against the model — conv boxes, shortcut arcs, dotted arcs exactly
where the spec projects or pads, output sizes as ``summarize`` gives them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from torch import nn

from conftest import assert_refused_in_one_line, cli, meta_model
from resnetlab.analysis import summarize
from resnetlab.analysis.compare import default_input_size
from resnetlab.analysis.diagram import BLOCKS, block_diagram, diagram
from resnetlab.analysis.formulas import formulas
from resnetlab.models import ResNet, model_spec

NS = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parent.parent
FIG3 = "docs/figures/fig3-vgg19-plain34-resnet34.svg"


def read_svg(text: str) -> ET.Element:
    return ET.fromstring(text)


def shapes(root: ET.Element, model: str, tag: str, cls: str) -> list[ET.Element]:
    return [
        e
        for e in root.iter(NS + tag)
        if cls in e.get("class", "").split() and e.get("data-model") == model
    ]


def expected(name: str) -> dict[str, object]:
    """What the model's own modules say the drawing must show."""
    m = meta_model(name)
    convs = [
        n
        for n, mod in m.named_modules()
        if isinstance(mod, nn.Conv2d) and "downsample" not in n.split(".")
    ]
    blocks, dotted = 0, set()
    if isinstance(m, ResNet) and m.spec.residual:
        blocks = len(m.blocks())
        dotted = {
            f"{s}.{i}"
            for s in m.stage_names
            for i, b in enumerate(getattr(m, s))
            if b.downsample is not None
        }
    size = default_input_size(model_spec(name))
    rows = summarize(m, size, depth=10).rows
    sizes = {
        f"{r.output_shape[2]}×{r.output_shape[3]}" for r in rows if len(r.output_shape or ()) == 4
    }
    sizes.add("1×1")  # the pooled vector and the logits
    return {"convs": len(convs), "blocks": blocks, "dotted": dotted, "sizes": sizes}


def check_column(root: ET.Element, name: str) -> None:
    want = expected(name)
    convs = shapes(root, name, "rect", "conv")
    assert sum(int(e.get("data-repeat", "0")) for e in convs) == want["convs"]
    arcs = shapes(root, name, "path", "arc")
    assert sum(int(e.get("data-repeat", "0")) for e in arcs) == want["blocks"]
    dotted = [a for a in arcs if "stroke-dasharray" in a.attrib]
    assert {a.get("data-block") for a in dotted} == want["dotted"]
    for a in dotted:
        assert a.get("class") in ("arc projection", "arc zero-pad")
    solid = [a for a in arcs if "stroke-dasharray" not in a.attrib]
    assert all(a.get("class") == "arc identity" for a in solid)
    drawn = {t.text for t in root.iter(NS + "text") if t.get("class") == "size"}
    assert want["sizes"] <= drawn  # side by side, the other columns add their own sizes


def test_fig3_triple_vgg_plain_residual(tmp_path: Path) -> None:
    d = diagram("vgg19", "plain34", "resnet34")
    root = read_svg(d.to_svg())
    for name in ("vgg19", "plain34", "resnet34"):
        check_column(root, name)
    assert shapes(root, "vgg19", "path", "arc") == []  # VGG and plain nets have no shortcut
    assert shapes(root, "plain34", "path", "arc") == []
    # The paper's own labels, kept as text (searchable, selectable).
    labels = [t.text for t in root.iter(NS + "text")]
    assert "3×3 conv, 128, /2" in labels and "7×7 conv, 64, /2" in labels
    assert {"224×224", "112×112", "56×56", "28×28", "14×14", "7×7", "1×1"} <= set(labels)
    assert labels.count("pool, /2") == 5 + 2  # VGG's five pools, the stems' max-pools
    # Aligned by stage: a stage's first conv sits at the same height in both nets.
    y = {
        e.get("data-model"): float(e.get("y", "0"))
        for e in root.iter(NS + "rect")
        if e.get("data-name") == "layer2.0.conv1"
    }
    assert y["plain34"] == y["resnet34"]
    # The committed picture the README embeds is this drawing (scripts/make_figures.py).
    assert (ROOT / FIG3).read_text(encoding="utf-8") == d.to_svg()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"]({FIG3})" in readme and "plot vgg19 plain34 resnet34 --diagram" in readme


def test_cifar_resnext_and_preact_columns() -> None:
    for name in ("resnet20", "resnext50_32x4d", "preact_resnet20"):
        root = read_svg(diagram(name).to_svg())
        check_column(root, name)
    root = read_svg(diagram("resnet20").to_svg())
    pads = [a for a in root.iter(NS + "path") if a.get("class") == "arc zero-pad"]
    assert len(pads) == 2  # option A pads where CIFAR stages 2 and 3 begin
    labels = [t.text for t in root.iter(NS + "text")]
    assert labels.count("pad") == 2 and "3×3 conv, 32, /2" in labels
    resnext = [t.text for t in read_svg(diagram("resnext50_32x4d").to_svg()).iter(NS + "text")]
    assert "3×3 conv, 256, /2, 32 groups" in resnext


def test_resnet1202_folds_and_says_how() -> None:
    d = diagram("resnet1202")
    check_column(read_svg(d.to_svg()), "resnet1202")
    assert len(d.notes) == 1 and "600 blocks drawn as 5 boxes" in d.notes[0]
    root = read_svg(d.to_svg())
    repeats = [t.text for t in root.iter(NS + "text") if t.get("class") == "repeat"]
    assert repeats == ["×200", "×199", "×199"]
    assert len(list(root.iter(NS + "rect"))) < 40  # one page, not 1,201 boxes
    unfolded = diagram("resnet20", fold=False)
    assert unfolded.notes == () and len(unfolded.columns[0].units()) == 9


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_block_alone_with_its_formula(kind: str) -> None:
    block = BLOCKS[kind].build()
    root = read_svg(block_diagram(kind).to_svg())
    texts = [t.text or "" for t in root.iter(NS + "text")]
    total = sum(f.count for f in formulas(block))
    assert f"{total:,} parameters (params --formulas):" in texts
    lines = [t.strip() for t in texts]
    for f in formulas(block):  # every line of `params --formulas`, as it prints it
        assert any(line.startswith(f.name) and line.endswith(f.text) for line in lines)
    convs = [e for e in root.iter(NS + "rect") if e.get("class") == "conv"]
    assert len(convs) == sum(
        1 for n, m in block.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in n
    )
    arcs = list(root.iter(NS + "path"))
    assert len(arcs) == (0 if kind == "plain" else 1)
    assert (
        ("stroke-dasharray" in arcs[0].attrib) == (block.downsample is not None) if arcs else True
    )


def test_cli_writes_svg_and_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    svg, png = tmp_path / "fig3.svg", tmp_path / "fig5.png"
    code, out, _ = cli(capsys, "plot", "vgg19", "plain34", "resnet34", "--diagram", "-o", str(svg))
    assert code == 0 and out == f"wrote {svg}\n"
    check_column(read_svg(svg.read_text()), "resnet34")
    code, out, _ = cli(capsys, "plot", "--block", "bottleneck", "-o", str(png))
    assert code == 0
    from PIL import Image

    with Image.open(png) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 20  # boxes and text, not a blank page
    code, out, _ = cli(capsys, "plot", "resnet152", "--diagram", "-o", str(svg))
    assert code == 0 and out.startswith("folded: resnet152: 50 blocks drawn as")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["plot", "resnet51", "--diagram", "-o", "x.svg"], "unknown model 'resnet51'"),
        (["plot", "--block", "triple", "-o", "x.svg"], "invalid choice: 'triple'"),
        (["plot", "--diagram", "-o", "x.svg"], "needs at least one MODEL"),
        (["plot", "resnet20", "--diagram", "-o", "x.jpg"], "must end in .svg or .png"),
        (["plot", "resnet20", "--block", "basic", "-o", "x.svg"], "give no MODEL"),
        (["plot", "-o", "x.png"], "give at least one MODEL"),
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


def test_a_module_without_stages_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot draw a Sequential"):
        diagram(("mlp", nn.Sequential(nn.Linear(4, 2)), (1, 4)))
    with pytest.raises(ValueError, match="unknown block"):
        block_diagram("triple")


def test_a_built_model_draws_at_its_native_size() -> None:
    from resnetlab.models import create_model

    d = diagram(("mine", create_model("resnet20", num_classes=7)))
    assert d.columns[0].input_size == (1, 3, 32, 32)
    labels = [t.text for t in read_svg(d.to_svg()).iter(NS + "text")]
    assert "fc 7" in labels and "8×8" in labels
