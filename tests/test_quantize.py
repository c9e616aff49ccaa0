"""int8: ``resnetlab quantize`` end to end on the shipped sample, the ``.pt2`` file in eval,
predict and bench, the sensitivity pass, and the engines skipped when their package is
missing."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from conftest import cli, tiny_train
from resnetlab.cli import main
from resnetlab.infer.fast import optimize_for_inference
from resnetlab.infer.folding import randomize_batchnorm
from resnetlab.infer.int8_file import load_quantized
from resnetlab.infer.predict import Predictor
from resnetlab.infer.quantize import (
    kept_dtype,
    layer_sensitivity,
    quantize_program,
)
from resnetlab.models import create_model
from resnetlab.runtime.execution import cpu_has_fast_bf16

pytest.importorskip("torchao")

TRAIN = tuple(tiny_train("--epochs", "1", batch=16, precision="", test=True))


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A one-epoch ResNet-20 on the sample, quantized on 32 training images."""
    root = tmp_path_factory.mktemp("int8")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("RESNETLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert main([*TRAIN, "--out", str(root), "--name", "run"]) == 0
        ckpt, out = root / "run" / "last.pt", root / "r20.int8.pt2"
        args = [
            "quantize",
            str(ckpt),
            "--data",
            "sample",
            "-o",
            str(out),
            "--calibration",
            "32",
            "--no-compile",
        ]
        assert main(args) == 0
        yield {"ckpt": ckpt, "pt2": out, "root": root}


def test_quantize_writes_a_file_close_to_fp32(quantized: dict[str, Path]) -> None:
    program, meta = load_quantized(quantized["pt2"])
    assert meta["format"] == "resnetlab-int8/1" and meta["model_name"] == "resnet20"
    assert meta["calibration"] == 32 and len(meta["layers"]) == 20  # 19 convs + fc
    assert all(0 < e["rel_error"] < 0.1 for e in meta["layers"])
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in op for op in ops)  # activations
    assert any("dequantize_per_channel" in op for op in ops)  # per-channel weights
    measured = meta["measured"]
    assert measured["split"] == "test" and measured["images"] == 300
    assert measured["agreement"] >= 90
    fp32, int8 = Predictor.load(quantized["ckpt"], device="cpu"), Predictor.load(quantized["pt2"])
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    a, b = fp32.probabilities(x), int8.probabilities(x)
    assert float((a - b).abs().max()) < 0.05


def test_quantized_file_loads_in_eval(
    quantized: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys,
        "eval",
        str(quantized["pt2"]),
        "--data",
        "sample",
        "--no-compile",
        "--format",
        "json",
    )
    assert code == 0, err
    result = json.loads(out)
    _, meta = load_quantized(quantized["pt2"])
    assert result["images"] == 300  # the same int8 model on the same split: the same top-1
    assert result["top1"] == pytest.approx(meta["measured"]["top1_int8"], abs=1e-6)


def test_quantized_file_loads_in_predict(
    quantized: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    image = quantized["root"] / "red.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
    code, out, err = cli(capsys, "predict", str(quantized["pt2"]), str(image), "--format", "json")
    assert code == 0, err
    (int8,) = json.loads(out)
    code, out, _ = cli(capsys, "predict", str(quantized["ckpt"]), str(image), "--format", "json")
    (fp32,) = json.loads(out)
    assert int8["top"][0]["class"] == fp32["top"][0]["class"]
    assert abs(int8["top"][0]["probability"] - fp32["top"][0]["probability"]) < 0.05


def test_quantized_file_loads_in_bench(
    quantized: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys,
        "bench",
        str(quantized["pt2"]),
        "--batch-size",
        "4",
        "--engines",
        "int8-reference",
        "--seconds",
        "0.2",
    )
    assert code == 0, err
    assert "picked: int8-reference" in out


@pytest.mark.parametrize("command", ["eval", "predict", "bench"])
def test_corrupt_quantized_file_gets_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"PK\x03\x04" + os.urandom(256))
    extra = {"eval": ["--data", "sample"], "predict": [str(bad)], "bench": []}[command]
    code, out, err = cli(capsys, command, str(bad), *extra)
    assert code == 2
    assert err.count("\n") == 1 and "not a readable int8 program" in err, err


def test_a_pt2_that_is_not_ours_gets_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.pt2"
    torch.export.save(torch.export.export(nn.Linear(3, 2), (torch.zeros(1, 3),)), other)
    code, _, err = cli(capsys, "eval", str(other), "--data", "sample")
    assert code == 2 and err.count("\n") == 1 and "not a resnetlab int8 file" in err


def _int8_breaks_layer_0() -> tuple[nn.Module, Tensor]:
    """A 1×1 conv whose every output channel has one weight of 1.0 (on an input channel
    that is always zero) and the signal on weights of 1e-3: per-channel int8 takes its scale
    from the 1.0 and rounds the 1e-3 weights to zero, so the layer's output is lost."""
    torch.manual_seed(0)
    broken, fine = nn.Conv2d(2, 4, 1), nn.Conv2d(4, 3, 1)
    with torch.no_grad():
        broken.weight[:, 0], broken.weight[:, 1] = 1.0, 1e-3
        broken.bias.zero_()
        fine.bias.zero_()  # the output is layer 0's signal, not a constant
    images = torch.cat([torch.zeros(8, 1, 6, 6), torch.randn(8, 1, 6, 6)], dim=1)
    return nn.Sequential(broken, fine).eval(), images


def test_sensitivity_flags_the_layer_that_int8_breaks() -> None:
    """The pass must flag that layer, and only that one, with the dtype it keeps."""
    model, images = _int8_breaks_layer_0()
    layers = {e.name: e for e in layer_sensitivity(model, images, keep="bf16")}
    assert layers["0"].dtype == "bf16" and layers["0"].rel_error > 0.9
    assert layers["1"].dtype == "int8" and layers["1"].rel_error < 0.05
    assert kept_dtype() == ("bf16" if cpu_has_fast_bf16() else "fp32")


def _rel_err(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_a_kept_layer_runs_in_bf16_in_the_int8_program() -> None:
    """Layer 0 in bf16 (its conv computes on bf16 tensors, no int8 weights), layer 1 in int8:
    the output is close to fp32, where all-int8 loses it."""
    model, images = _int8_breaks_layer_0()
    with torch.no_grad():
        ref = model(images)
    all_int8 = quantize_program(model, images)
    kept = quantize_program(model, images, bf16_layers=["0"])
    convs = [n for n in kept.graph.nodes if n.target == torch.ops.aten.conv2d.default]
    assert [n.meta["val"].dtype for n in convs] == [torch.bfloat16, torch.float32]
    weights = [n for n in kept.graph.nodes if "dequantize_per_channel" in str(n.target)]
    assert len(weights) == 1  # layer 1's
    assert _rel_err(all_int8.module()(images), ref) > 0.5
    assert _rel_err(kept.module()(images), ref) < 0.15  # layer 1's int8 rounding, 4 inputs


def test_engines_are_skipped_when_their_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in {"torchao", "openvino", "nncf", "onnxruntime"}:
            monkeypatch.setitem(sys.modules, name, None)
    for name in ("torchao", "openvino", "nncf", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)
    engines = ["eager", "int8", "onnxruntime-int8", "openvino", "openvino-bf16", "openvino-int8"]
    fast = optimize_for_inference(
        create_model("resnet20").eval(),
        torch.randn(2, 3, 32, 32),
        engines=engines,
        min_seconds=0.05,
        keep_memory=False,
    )
    assert fast.engine == "eager" and [r.engine for r in fast.results] == ["eager"]
    assert set(fast.skipped) == set(engines[1:])
    for engine, why in fast.skipped.items():
        assert "pip install 'resnetlab[" in why and "\n" not in why, (engine, why)
    assert "int8" in fast.skipped["int8"] and "openvino" in fast.skipped["openvino-int8"]


def test_ort_and_openvino_engines_agree_with_fp32() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model("resnet20"))
    engines = ["onnxruntime-int8", "openvino", "openvino-int8"]
    fast = optimize_for_inference(
        model, torch.randn(8, 3, 32, 32), engines=engines, min_seconds=0.1, keep_memory=False
    )
    assert fast.skipped == {}
    errors = {r.engine: r.max_rel_error for r in fast.results}
    assert errors["openvino"] < 1e-4  # f32: rounding only
    assert 1e-4 < errors["onnxruntime-int8"] < 0.25 and 1e-4 < errors["openvino-int8"] < 0.25


def test_export_openvino_ir(quantized: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    ov = pytest.importorskip("openvino")
    xml = quantized["root"] / "model.xml"
    code, out, err = cli(capsys, "export", str(quantized["ckpt"]), "-o", str(xml))
    assert code == 0, err
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    model = ov.Core().read_model(str(xml))
    assert json.loads(model.get_rt_info(["resnetlab", "classes"]).astype(str))[0] == "airplane"
    p = Predictor.load(quantized["ckpt"], device="cpu")
    x = torch.randn(3, 3, 32, 32)
    # f32 arithmetic: on a CPU with AVX-512 BF16 or AMX, OpenVINO picks bf16 by default
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = torch.from_numpy(next(iter(compiled(x.numpy()).values())))
    with torch.no_grad():
        torch.testing.assert_close(got, p.model(x), rtol=1e-3, atol=1e-3)


def test_a_program_quantized_on_one_image_takes_any_batch() -> None:
    """Calibrating (and tracing) on a single image must still give a dynamic batch: a batch
    of one traced as it is would fix the batch at 1 (the int8 engine at batch 1 failed so)."""
    model = randomize_batchnorm(create_model("resnet20")).eval()
    one = torch.randn(1, 3, 32, 32)
    program = quantize_program(model, one)
    four = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = model(four)
    out = program.module()(four)
    assert out.shape == (4, 10)
    assert _rel_err(out, ref) < 0.5  # int8 rounding with one calibration image, not garbage
    assert program.module()(one).shape == (1, 10)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_fused_conv_add_kernel_still_copies_its_result() -> None:
    """docs/speed.md, where int8 loses time: the compiled int8 ResNet fuses each residual add
    into ``onednn::qconv2d_pointwise.binary`` (oneDNN's ``sum``), which writes conv + shortcut
    into the shortcut's buffer in place and then returns a copy of it that nobody reads
    (torch ≥ 2.12: a custom op may not return an alias of an input). Nothing in resnetlab
    avoids that copy; when torch drops it this fails: re-time int8 and update the note."""
    torch.manual_seed(0)
    nhwc = torch.channels_last
    x = torch.randint(0, 256, (2, 8, 4, 4), dtype=torch.uint8).contiguous(memory_format=nhwc)
    w = torch.randint(-127, 128, (8, 8, 1, 1), dtype=torch.int8)
    w_scale, w_zp = torch.full((8,), 0.01), torch.zeros(8, dtype=torch.int32)
    packed = torch.ops.onednn.qconv_prepack(w, w_scale, 0.02, 0, [1, 1], [0, 0], [1, 1], 1)
    accum = torch.randint(0, 256, (2, 8, 4, 4), dtype=torch.uint8).contiguous(memory_format=nhwc)
    before = accum.clone()
    out = torch.ops.onednn.qconv2d_pointwise.binary(
        x, 0.02, 0, packed, w_scale, w_zp, accum, None, [1, 1], [0, 0], [1, 1], 1,
        0.05, 0, torch.uint8, 0.03, 0, "sum", 1.0, "relu", [], None,
    )  # fmt: skip
    assert not torch.equal(accum, before)  # the result is written into the shortcut...
    assert torch.equal(out, accum)  # ...and returned again as a copy with its own memory:
    assert out.untyped_storage().data_ptr() != accum.untyped_storage().data_ptr()
