"""Counting and tables agree with torchinfo, torch.utils.flop_counter, the paper and the
by-hand counts."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from conftest import meta_model
from resnetlab.analysis import (
    ShapeError,
    compare,
    count_params,
    efficiency,
    formulas,
    param_formula,
    summarize,
    total_formula,
)
from resnetlab.analysis.charts import plot_depth_sweep, plot_stages, stage_costs
from resnetlab.fileio import WriteError
from resnetlab.models import create_model, list_models

# (model, input size): a spread of block kinds, shortcut options, stems and heads.
CASES = [
    ("resnet20", (2, 3, 32, 32), {}),
    ("resnet20", (2, 3, 32, 32), {"shortcut": "C"}),
    ("plain20", (2, 3, 32, 32), {}),
    ("resnet18", (2, 3, 64, 64), {}),
    ("resnet50", (2, 3, 64, 64), {}),
    ("resnet50_v1_5", (1, 3, 96, 96), {"head": "mlp", "num_classes": 10}),
    ("preact_resnet164", (2, 3, 32, 32), {}),
    ("resnext50_32x4d", (1, 3, 64, 64), {}),
    ("vgg11_bn", (1, 3, 32, 32), {}),
]


@pytest.mark.parametrize(("name", "size", "kw"), CASES)
def test_agrees_with_torchinfo(name: str, size: tuple[int, ...], kw: dict[str, object]) -> None:
    torchinfo = pytest.importorskip("torchinfo")
    torch.manual_seed(0)
    model = create_model(name, **kw)
    ours = summarize(model, size, depth=99)
    theirs = torchinfo.summary(
        model, input_size=size, depth=99, verbose=0, device="cpu", mode="eval"
    )
    assert ours.totals.params == theirs.total_params
    assert ours.totals.trainable == theirs.trainable_params
    assert ours.totals.macs == theirs.total_mult_adds
    assert ours.totals.activation_bytes == theirs.total_output_bytes
    assert ours.totals.param_bytes == theirs.total_param_bytes
    # torchinfo adds the tensor object's own overhead (64 bytes); ours is numel × 4.
    assert 0 <= theirs.total_input - ours.totals.input_bytes <= 128
    leaves = [(c.type, c.depth, list(c.output_shape or ())) for c in ours.calls if c.is_leaf]
    theirs_leaves = [
        (li.class_name, li.depth, li.output_size) for li in theirs.summary_list if li.is_leaf_layer
    ]
    assert leaves == theirs_leaves


@pytest.mark.parametrize(("name", "size", "kw"), CASES)
def test_agrees_with_flop_counter(name: str, size: tuple[int, ...], kw: dict[str, object]) -> None:
    model = meta_model(name, **kw)
    ours = summarize(model, size).totals.conv_macs
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(size, device="meta"))
    assert 2 * ours == counter.get_total_flops()


def test_resnet50_summary_as_torchinfo() -> None:
    text = summarize(meta_model("resnet50"), (2, 3, 224, 224), title="resnet50").to_text()
    for expected in (
        "Total params: 25,557,032",
        "Total mult-adds (G): 7.72",
        "Input size (MB): 1.20",
        "Forward/backward pass size (MB): 338.80",
        "Params size (MB): 102.23",
        "Estimated Total Size (MB): 442.24",
        "v1 (paper)",
    ):
        assert expected in text


# He et al. 2015, Table 1: multiply-adds ×10^9 at 224×224 (stride on the first 1×1).
TABLE1 = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


@pytest.mark.parametrize(("name", "paper"), TABLE1.items())
def test_table1_macs_with_paper_placement(name: str, paper: float) -> None:
    macs = compare(name).rows[0].conv_macs / 1e9
    # The paper rounds loosely (ResNet-34: 3.66 → "3.6"); every figure is within 2%.
    assert abs(macs - paper) / paper < 0.02, macs


def test_v1_5_placement_is_not_table1() -> None:
    macs = compare("resnet50_v1_5").rows[0].conv_macs / 1e9
    assert macs > 3.8 * 1.05  # 4.09 G: the placement is visible in the count


def test_depth_one_rows_add_up_to_the_total() -> None:
    s = summarize(meta_model("resnet50"), (1, 3, 224, 224), depth=1)
    assert sum(r.params or 0 for r in s.rows) == s.totals.params
    assert sum(r.macs or 0 for r in s.rows) == s.totals.macs
    assert {r.depth for r in s.rows} == {1}


def test_summary_formats() -> None:
    s = summarize(meta_model("resnet20"), (1, 3, 32, 32), depth=2, title="resnet20")
    data = json.loads(s.render("json"))
    assert data["totals"]["params"] == 269_722
    assert data["layers"][0]["name"] == "conv1"
    assert "torchinfo" in data["conventions"]["macs"]
    rows = list(csv.DictReader(io.StringIO(s.render("csv"))))
    assert len(rows) == len(s.rows)
    assert rows[0]["output_shape"] == "1x16x32x32"
    md = s.render("md")
    assert "| Layer | Type | Output shape | Params | Mult-adds |" in md
    assert "option" not in md or "A: identity" in md
    assert "Shortcuts: A: identity" in s.render("text")


def test_summary_leaves_the_model_as_it_was() -> None:
    model = create_model("resnet20")
    model.train()
    summarize(model, (2, 3, 32, 32))
    assert model.training
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_bad_input_size_is_one_error() -> None:
    with pytest.raises(ShapeError, match=r"input of size \(1, 4, 32, 32\) does not fit"):
        summarize(create_model("resnet20"), (1, 4, 32, 32))
    with pytest.raises(ValueError, match="positive"):
        summarize(create_model("resnet20"), (1, 3, 0, 32))


# ---------------------------------------------------------------- formulas (by-hand counts)
def test_conv_formulas_as_the_seed_writes_them() -> None:
    f = param_formula("conv1", nn.Conv2d(3, 64, 7, bias=False))
    assert f is not None
    assert f.text == "3×64×7×7 = 9,408"
    f = param_formula("stem", nn.Conv2d(3, 64, 7))
    assert f is not None
    assert f.text == "3×64×7×7 + 64 = 9,472"
    f = param_formula("g", nn.Conv2d(128, 128, 3, groups=32, bias=False))
    assert f is not None
    assert f.text == "(128/32)×128×3×3 = 4,608"
    f = param_formula("bn", nn.BatchNorm2d(64))
    assert f is not None
    assert f.text == "64 (γ) + 64 (β) = 128"
    f = param_formula("fc", nn.Linear(2048, 1000))
    assert f is not None
    assert f.text == "2048×1000 + 1000 = 2,049,000"
    assert param_formula("relu", nn.ReLU()) is None


@pytest.mark.parametrize("name", list_models())
def test_formulas_add_up_for_every_model(name: str) -> None:
    model = meta_model(name)
    assert sum(f.count for f in formulas(model)) == count_params(model)


def test_first_layers_vgg_vs_resnet() -> None:
    rows = compare(*efficiency.first_layers()).rows
    assert [r.params for r in rows] == [260_160, 9_472]
    assert rows[0].formula == (
        "(3×64×3×3 + 64) + (64×64×3×3 + 64) + (64×128×3×3 + 128) + (128×128×3×3 + 128) = 260,160"
    )
    assert rows[1].formula == "(3×64×7×7 + 64) = 9,472"


def test_plain_vs_bottleneck_blocks() -> None:
    rows = compare(*efficiency.blocks()).rows
    assert [r.params for r in rows] == [73_856, 45_248, 57_728]
    assert rows[2].formula.endswith("(64×128×1×1 + 128) + (64×128×1×1 + 128) = 57,728")
    assert [r.depth for r in rows] == [2, 3, 3]  # the projection is a shortcut, not depth
    assert total_formula(efficiency.ConvBlock()) == "(64×64×3×3 + 64) + (64×64×3×3 + 64) = 73,856"


# ---------------------------------------------------------------- compare
def test_compare_named_models_and_depth() -> None:
    table = compare("resnet20", "resnet1202", "plain34", "resnet50", "vgg16", "preact_resnet164")
    assert [r.depth for r in table.rows] == [20, 1202, 34, 50, 16, 164]
    assert table.rows[0].input_size == (1, 3, 32, 32)
    assert table.rows[3].input_size == (1, 3, 224, 224)
    assert "resnet1202" in table.render("text")
    data = json.loads(table.render("json"))
    assert data["rows"][3]["params"] == 25_557_032


def test_compare_needs_a_size_for_bare_modules() -> None:
    with pytest.raises(ValueError, match="input size"):
        compare(nn.Conv2d(3, 8, 3))
    row = compare(("conv", nn.Conv2d(3, 8, 3)), input_size=(1, 3, 10, 10)).rows[0]
    assert row.params == 3 * 8 * 9 + 8
    assert row.conv_macs == 3 * 8 * 9 * 8 * 8


# ---------------------------------------------------------------- charts
def test_stage_costs_add_up() -> None:
    model = meta_model("resnet50")
    costs = stage_costs(model, (1, 3, 224, 224))
    assert [c.stage for c in costs] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert sum(c.params for c in costs) == count_params(model)
    assert sum(c.conv_macs for c in costs) == compare("resnet50").rows[0].conv_macs


def test_charts_png_and_svg(tmp_path: Path) -> None:
    png, svg = tmp_path / "s.png", tmp_path / "d.svg"
    plot_stages(meta_model("resnet20"), (1, 3, 32, 32), png, title="resnet20")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = plot_depth_sweep(["resnet20", "resnet56", "plain20"], svg)
    assert "<svg" in svg.read_text()
    assert [p[2] for p in points] == [20, 56, 20]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left


def test_chart_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.figure

    target = tmp_path / "keep.png"
    target.write_bytes(b"old")

    def boom(*_a: object, **_k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", boom)
    with pytest.raises(WriteError, match="disk full"):
        plot_stages(meta_model("resnet20"), (1, 3, 32, 32), target, title="x")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["keep.png"]


def test_chart_rejects_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plot_stages(meta_model("resnet20"), (1, 3, 32, 32), tmp_path / "x.jpg", title="x")
    with pytest.raises(ValueError, match="does not exist"):
        plot_stages(meta_model("resnet20"), (1, 3, 32, 32), tmp_path / "no" / "x.png", title="x")


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    from resnetlab.fileio import write_text_atomic

    old = os.umask(0o022)
    try:
        png = tmp_path / "s.png"
        plot_stages(meta_model("resnet20"), (1, 3, 32, 32), png, title="x")
        write_text_atomic(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    for f in (png, tmp_path / "t.txt"):
        assert f.stat().st_mode & 0o777 == 0o644
