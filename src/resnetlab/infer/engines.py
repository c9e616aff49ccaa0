"""The inference engines, each a callable ``images → logits`` built from a prepared model
(:func:`~resnetlab.infer.folding.prepare`; :func:`build_runner` picks one by name):

- ``eager``: PyTorch eager, fp32.
- ``eager-bf16``: eager under bf16 autocast (fast where the CPU has AVX-512 BF16/AMX, or a GPU).
- ``compile`` / ``compile-bf16``: ``torch.compile`` (Inductor) with ``freezing``, which treats
  the weights as constants and pre-packs them for oneDNN.
- ``onnxruntime``: the model exported to ONNX (:func:`export_onnx`) and run by ONNX Runtime
  (fp32).
- ``int8``: our own int8 path, PyTorch's export quantization flow compiled by Inductor
  (:mod:`resnetlab.infer.quantize`; needs ``torchao``).
- ``onnxruntime-int8``: ONNX Runtime on a QDQ model from ``onnxruntime.quantization``'s static
  quantization (per-channel int8 weights, uint8 activations).
- ``openvino`` / ``openvino-bf16`` / ``openvino-int8``: OpenVINO's CPU plugin with f32 or bf16
  inference precision, or on a model quantized by NNCF (needs ``resnetlab[openvino]``).

The int8 engines calibrate on the example batch itself, which is right for timing them and for
a sanity check of their outputs; for accuracy, ``resnetlab quantize`` calibrates on training
images and measures the test split. Timing them and choosing one is
:mod:`~resnetlab.infer.fast`'s.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from resnetlab.errors import InvalidValueError, MissingExtraError
from resnetlab.fileio import write_bytes_atomic

Runner = Callable[[Tensor], Tensor]
ENGINES = (
    "eager",
    "eager-bf16",
    "compile",
    "compile-bf16",
    "onnxruntime",
    "int8",
    "onnxruntime-int8",
    "openvino",
    "openvino-bf16",
    "openvino-int8",
)
INT8_ENGINES = frozenset({"int8", "onnxruntime-int8", "openvino-int8"})


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[None]:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def eager_runner(model: nn.Module, *, bf16: bool = False) -> Runner:
    device = next(model.parameters()).device

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode(), _autocast(device, bf16):
            out: Tensor = model(x.contiguous(memory_format=torch.channels_last))
        return out.float()

    return run


def compiled_runner(model: nn.Module, example: Tensor, *, bf16: bool = False) -> Runner:
    """``torch.compile`` with Inductor's ``freezing`` (weights as constants, pre-packed).

    For bf16 the weights themselves are cast (autocast would hide the dtype from freezing
    and leave fp32 weights to convert on every call). Compiles on the first call, here,
    with ``example``: that takes a while on a small CPU.
    """
    import torch._inductor.config as inductor_config

    dtype = torch.bfloat16 if bf16 else torch.float32
    target = copy.deepcopy(model).to(dtype) if bf16 else model
    compiled = torch.compile(target, dynamic=False)

    def run(x: Tensor) -> Tensor:
        with inductor_config.patch(freezing=True), torch.no_grad():
            out: Tensor = compiled(x.to(dtype).contiguous(memory_format=torch.channels_last))
        return out.float()

    run(example)  # compile now, not on the user's first request
    return run


def export_onnx(
    model: nn.Module,
    example: Tensor,
    path: str | None = None,
    *,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """Export to ONNX (dynamic batch) with PyTorch's exporter; returns the bytes and writes
    them atomically to ``path`` if given. ``metadata`` goes into the model's
    ``metadata_props``. Needs the ``onnx`` and ``onnxscript`` packages."""
    import warnings

    try:
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise MissingExtraError("ONNX export needs: pip install 'resnetlab[onnx]'") from err
    batch = torch.export.Dim("batch", min=1, max=4096)
    # Traced on two images at most: the graph's batch is dynamic (ONNX Runtime runs any),
    # and a traced example above the export's bound failed (`bench --batch-size 5000`).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            copy.deepcopy(model).eval().float().to(memory_format=torch.contiguous_format),  # type: ignore[call-overload]
            (example[:2].contiguous(),),
            dynamo=True,
            verbose=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),  # by position: forward need not call it x
        )
    if program is None:
        raise RuntimeError("ONNX export produced no program")
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data: bytes = proto.SerializeToString()
    if path is not None:
        write_bytes_atomic(path, data)
    return data


def onnxruntime_runner(
    model: nn.Module, example: Tensor, *, threads: int | None = None, int8: bool = False
) -> Runner:
    """ONNX Runtime's CPU provider, default session options but the same thread count as
    PyTorch (a fair comparison). ``int8``: the model quantized first (:func:`ort_quantize`)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise MissingExtraError(
            "the onnxruntime engine needs: pip install 'resnetlab[onnx]'"
        ) from err
    data = export_onnx(model, example)
    if int8:
        data = ort_quantize(data, example)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        (out,) = session.run(None, {name: x.detach().cpu().contiguous().numpy()})
        return torch.from_numpy(out)

    return run


def ort_quantize(data: bytes, calibration: Tensor) -> bytes:
    """ONNX Runtime's static QDQ quantization of an ONNX model: int8 weights per output
    channel, uint8 activations with ranges from ``calibration`` (min/max). Files, because
    ``quantize_static`` reads and writes paths."""
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter([{"images": calibration.contiguous().numpy()}])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(data)
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
        return dst.read_bytes()


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise MissingExtraError(
            "the openvino engines need: pip install 'resnetlab[openvino]'"
        ) from err
    return openvino


def openvino_model(model: nn.Module, example: Tensor, *, int8: bool = False) -> Any:
    """The model (BN folded, NCHW) converted to an OpenVINO ``Model``; ``int8``: quantized by
    NNCF's post-training quantization with ``example`` as its calibration set."""
    ov = _openvino()
    plain = copy.deepcopy(model).eval().float().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    with torch.no_grad():
        converted = ov.convert_model(plain, example_input=example.contiguous())
    if int8:
        try:
            import nncf
        except ImportError as err:
            raise MissingExtraError(
                "openvino-int8 needs NNCF: pip install 'resnetlab[openvino]'"
            ) from err
        converted = nncf.quantize(converted, nncf.Dataset([example.contiguous().numpy()]))
    return converted


def openvino_runner(
    model: nn.Module, example: Tensor, *, precision: str = "f32", threads: int | None = None
) -> Runner:
    """OpenVINO's CPU plugin, one stream with PyTorch's thread count (latency mode: the
    whole batch on every thread, as the other engines run). ``precision``: ``f32``,
    ``bf16`` (the inference precision hint) or ``int8`` (NNCF, with f32 for the rest)."""
    ov = _openvino()
    converted = openvino_model(model, example, int8=precision == "int8")
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(threads or torch.get_num_threads()),
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = ov.Core().compile_model(converted, "CPU", config)
    request = compiled.create_infer_request()

    def run(x: Tensor) -> Tensor:
        out = request.infer({0: x.detach().cpu().contiguous().numpy()})
        return torch.from_numpy(next(iter(out.values())).copy())

    return run


def build_runner(engine: str, model: nn.Module, example: Tensor) -> Runner:
    """A callable ``images → logits`` for ``engine`` (``model`` already :func:`prepare`-d
    for the PyTorch engines; ONNX export starts from the folded model in NCHW)."""
    if engine == "eager":
        return eager_runner(model)
    if engine == "eager-bf16":
        return eager_runner(model, bf16=True)
    if engine == "compile":
        return compiled_runner(model, example)
    if engine == "compile-bf16":
        return compiled_runner(model, example, bf16=True)
    if engine == "onnxruntime":
        return onnxruntime_runner(model, example)
    if engine == "onnxruntime-int8":
        return onnxruntime_runner(model, example, int8=True)
    if engine == "int8":
        from resnetlab.infer.quantize import int8_runner

        return int8_runner(model, example)
    if engine.startswith("openvino"):
        precision = engine.partition("-")[2] or "f32"
        return openvino_runner(model, example, precision=precision)
    raise InvalidValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
