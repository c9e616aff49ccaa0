"""Post-training static int8 quantization with PyTorch's 2.x export flow (PT2E).

The flow (torchao's ``prepare_pt2e`` / ``convert_pt2e``: torch 2.13 no longer ships
``torch.ao.quantization.quantize_pt2e``):

1. BN folded into the convs (:func:`~resnetlab.infer.fast.prepare`), so each conv is quantized
   with the scale its deployed weights have, not the pre-BN one.
2. ``torch.export`` with a dynamic batch, annotated by the ``X86InductorQuantizer``: weights
   int8, symmetric, **per output channel**; activations uint8, per tensor, ranges from a
   histogram observer over the calibration images.
3. A sensitivity pass (:func:`layer_sensitivity`): every conv/linear layer's output error when
   its input and weights alone are rounded to int8, on the calibration images. Layers above
   ``max_layer_error`` are left out of the quantizer and run in bf16 where the CPU has
   native bf16 kernels (AVX-512 BF16 or AMX: :func:`kept_dtype`), else in fp32. bf16 keeps
   8 significant bits against int8's 7-bit weights, but in floating point: a layer int8
   breaks by one outlier weight or activation per channel keeps its small values in bf16.
4. Calibration, conversion to quantize/dequantize pairs, and a second export: the file.

The file (``.pt2``) is ``torch.export.save``'s archive of that program, which
``torch.export.load`` reads back without unpickling anything, plus one JSON entry,
``resnetlab.json`` (:data:`FORMAT`, model name, classes, preprocessing, training config,
the per-layer report). Run as it is, the program computes int8-rounded values in fp32 (the
reference path: exact int8 semantics, fp32 speed); ``torch.compile`` with Inductor's
``freezing`` lowers each dequantize → conv → quantize to oneDNN's int8 kernels (VNNI,
AMX where present).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnetlab.errors import (
    InvalidValueError,
    MissingExtraError,
    NoEngineError,
    first_line,
)
from resnetlab.fileio import write_bytes_atomic
from resnetlab.runtime.checkpoint import CheckpointError

FORMAT = "resnetlab-int8/1"
META_ENTRY = "resnetlab.json"
SUFFIX = ".pt2"
MAX_LAYER_ERROR = 0.05  # relative L2 error of a layer's output under int8 rounding
Runner = Callable[[Tensor], Tensor]


class QuantizedFileError(CheckpointError):
    """A ``.pt2`` file that is not a readable resnetlab int8 program (one line, exit 2)."""


def _pt2e() -> Any:
    """torchao's PT2E entry points. torchao logs a warning per optional CUDA kernel library
    it cannot load on a CPU-only machine; those are not ours to report."""
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        from torchao.quantization.pt2e import quantize_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    except ImportError as err:
        raise MissingExtraError("int8 quantization needs: pip install 'resnetlab[int8]'") from err
    return quantize_pt2e, x86_inductor_quantizer


# ---------------------------------------------------------------------- sensitivity
@dataclass(frozen=True)
class LayerError:
    """One conv/linear layer: its output's relative L2 error with int8 input and weights."""

    name: str
    kind: str  # "conv" or "linear"
    rel_error: float
    dtype: str  # "int8", or "bf16"/"fp32" (:func:`kept_dtype`) where the error was too large


def _fake_quant_activation(x: Tensor) -> Tensor:
    """uint8, per tensor, affine, from the tensor's own range (the quantizer's layout; the
    histogram observer it uses picks a narrower, better range, so this is an upper bound)."""
    lo, hi = float(x.min().clamp(max=0)), float(x.max().clamp(min=0))
    scale = max(hi - lo, 1e-8) / 255
    zero = round(-lo / scale)
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


def _fake_quant_weight(w: Tensor) -> Tensor:
    """int8, symmetric, per output channel (axis 0), as the x86 quantizer does."""
    amax = w.detach().abs().flatten(1).amax(dim=1).clamp(min=1e-8)
    scale = (amax / 127.5).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -128, 127)


def kept_dtype() -> str:
    """What a layer the sensitivity pass keeps out of int8 runs in: ``bf16`` where oneDNN
    has native bf16 kernels on this CPU (AVX-512 BF16 or AMX; elsewhere bf16 is emulated
    and slower than fp32), else ``fp32``."""
    from resnetlab.runtime.execution import cpu_has_fast_bf16

    return "bf16" if cpu_has_fast_bf16() else "fp32"


@torch.no_grad()
def layer_sensitivity(
    model: nn.Module,
    images: Tensor,
    *,
    max_layer_error: float = MAX_LAYER_ERROR,
    keep: str = "fp32",
) -> list[LayerError]:
    """Each conv/linear layer of ``model`` (BN already folded) run on the inputs it sees for
    ``images``, once as it is and once with input and weights rounded to int8: the relative
    L2 error of its output. Per layer, not end to end, so one pass ranks every layer and a
    layer is judged by its own rounding, not by what earlier layers did. Layers above
    ``max_layer_error`` get dtype ``keep``."""
    errors: dict[str, tuple[str, float]] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def record(m: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
            x = _fake_quant_activation(inputs[0].float())
            w = _fake_quant_weight(m.weight.float())  # type: ignore[arg-type]
            if isinstance(m, nn.Conv2d):
                q = m._conv_forward(x, w, m.bias)
                kind = "conv"
            else:
                bias = m.bias if isinstance(m.bias, Tensor) else None
                q, kind = nn.functional.linear(x, w, bias), "linear"
            err = float((q - out).norm() / out.norm().clamp(min=1e-12))
            errors[name] = (kind, max(err, errors.get(name, ("", 0.0))[1]))

        return record

    handles = [
        m.register_forward_hook(hook(name))
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        model(images)
    finally:
        for h in handles:
            h.remove()
    return [
        LayerError(name, kind, err, keep if err > max_layer_error else "int8")
        for name, (kind, err) in errors.items()
    ]


# ---------------------------------------------------------------------- quantization
def _export(model: nn.Module, example: Tensor) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=4096)
    # Traced on a batch of two: a batch of one would be specialised to 1 (PyTorch treats a
    # size-1 dimension as a constant), which the dynamic batch then contradicts.
    two = example[:2] if len(example) >= 2 else example[:1].expand(2, *example.shape[1:])
    # by position, not by name: a model's forward need not call its input ``x``
    return torch.export.export(model, (two.contiguous(),), dynamic_shapes=({0: batch},))


def _batches(images: Tensor, size: int) -> Iterator[Tensor]:
    for i in range(0, len(images), size):
        yield images[i : i + size]


def _module_path(node: torch.fx.Node) -> str:
    """The module that called ``node`` (the innermost), as ``named_modules`` spells it."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = str(list(stack.values())[-1][0])
    return path.removeprefix("L['self'].")  # as torch.export may write the root


def _run_in_bf16(gm: torch.fx.GraphModule, names: Sequence[str]) -> int:
    """Every conv/linear of the modules ``names`` in ``gm`` on bf16 tensors: its input,
    weight and bias cast to bf16 before it, its output back to fp32 after, for the int8
    graph around it. Under Inductor's freezing the weight casts fold into constants and the
    layer is one oneDNN bf16 kernel. Done on the converted graph, after the quantizer has
    left these layers alone, so the quantizer's pattern matching never sees the casts.
    Returns how many ops it changed."""
    wanted, changed = set(names), 0
    targets = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in targets:
            continue
        if _module_path(node) not in wanted:
            continue
        args = list(node.args)
        with gm.graph.inserting_before(node):
            for i in range(min(3, len(args))):  # input, weight, bias
                if isinstance(args[i], torch.fx.Node):
                    args[i] = gm.graph.call_function(
                        torch.ops.aten.to.dtype, (args[i], torch.bfloat16)
                    )
        node.args = tuple(args)
        with gm.graph.inserting_after(node):
            back = gm.graph.call_function(torch.ops.aten.to.dtype, (node, torch.float32))
        node.replace_all_uses_with(back, delete_user_cb=lambda user, b=back: user is not b)
        changed += 1
    gm.graph.lint()
    gm.recompile()
    return changed


@torch.no_grad()
def quantize_program(
    model: nn.Module,
    calibration: Tensor,
    *,
    fp32_layers: Sequence[str] = (),
    bf16_layers: Sequence[str] = (),
    batch_size: int = 64,
) -> torch.export.ExportedProgram:
    """``model`` (fp32, any BN state) → an exported int8 program with a dynamic batch.

    ``calibration``: normalised images ``(N, C, H, W)`` whose activation ranges set the
    scales; ``fp32_layers`` and ``bf16_layers``: module names (conv/linear, as
    :func:`layer_sensitivity` names them) the quantizer leaves alone, run in that dtype."""
    from resnetlab.infer.fast import prepare

    quantize_pt2e, xiq = _pt2e()
    folded = prepare(model, channels_last=False)
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    for name in (*fp32_layers, *bf16_layers):  # the name matches the layers inside it too
        quantizer.set_module_name_qconfig(name, None)
    observed = quantize_pt2e.prepare_pt2e(_export(folded, calibration).module(), quantizer)
    for batch in _batches(calibration, batch_size):
        observed(batch)
    converted = quantize_pt2e.convert_pt2e(observed)
    if bf16_layers and _run_in_bf16(converted, bf16_layers) != len(bf16_layers):
        raise ValueError(f"not every layer of {list(bf16_layers)} is a conv/linear of the model")
    return _export(converted, calibration)


def save_quantized(
    program: torch.export.ExportedProgram, path: str | os.PathLike[str], meta: dict[str, Any]
) -> None:
    """Write ``program`` and ``meta`` (JSON-able) atomically as one ``.pt2`` archive."""
    buf = io.BytesIO()
    entry = json.dumps({"format": FORMAT, **meta})
    torch.export.save(program, buf, extra_files={META_ENTRY: entry})
    write_bytes_atomic(path, buf.getvalue())


def load_quantized(
    path: str | os.PathLike[str],
) -> tuple[torch.export.ExportedProgram, dict[str, Any]]:
    """The program and its metadata; anything unreadable is a :class:`QuantizedFileError`."""
    _pt2e()  # registers the quantize/dequantize ops the program calls
    extra = {META_ENTRY: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
        meta = json.loads(extra[META_ENTRY] or "{}")
    except (OSError, RuntimeError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise QuantizedFileError(f"{path}: not a readable int8 program ({err})") from err
    except Exception as err:  # torch.export's deserializer has no one error type
        raise QuantizedFileError(
            f"{path}: not a readable int8 program ({type(err).__name__})"
        ) from err
    found = meta.get("format")
    if isinstance(found, str) and found.startswith("resnetlab-int8/") and found != FORMAT:
        raise QuantizedFileError(
            f"{path}: a resnetlab int8 file of format {found}; this version reads {FORMAT}"
        )
    if found != FORMAT:
        raise QuantizedFileError(f"{path}: a .pt2 program, but not a resnetlab int8 file")
    return program, meta


def is_quantized_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == SUFFIX


# ---------------------------------------------------------------------- running
class QuantizedNet(nn.Module):
    """An exported int8 program as a module that ``eval``/``predict`` can call.

    The program's graph cannot switch train/eval modes (it is always inference), so
    :meth:`train` only records the flag. ``compile=True`` lowers to oneDNN int8 kernels on
    the first call of each batch shape (tens of seconds on a small CPU)."""

    def __init__(self, program: torch.export.ExportedProgram, *, compile: bool = False) -> None:
        super().__init__()
        self.graph = program.module()
        self.compiled = compile
        self._run: Callable[[Tensor], Tensor] = (
            torch.compile(self.graph, dynamic=False) if compile else self.graph
        )

    def train(self, mode: bool = True) -> QuantizedNet:
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        with _freezing(self.compiled), torch.no_grad():
            out: Tensor = self._run(x.float().contiguous())
        return out


def _freezing(on: bool) -> contextlib.AbstractContextManager[Any]:
    if not on:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    patch: contextlib.AbstractContextManager[Any] = inductor_config.patch(freezing=True)
    return patch


def int8_runner(model: nn.Module, calibration: Tensor, *, compile: bool = True) -> Runner:
    """The ``int8`` engine of :func:`~resnetlab.infer.fast.optimize_for_inference`: ``model``
    quantized on ``calibration`` (every layer int8), compiled now on its shape."""
    net = QuantizedNet(quantize_program(model, calibration), compile=compile)
    net(calibration)
    return net


# ---------------------------------------------------------------------- a checkpoint
@dataclass
class QuantizeReport:
    """What ``resnetlab quantize`` measured: top-1 (%) of both models on ``split``, the
    share (%) of images whose top-1 class they agree on, and every layer's error."""

    output: Path
    split: str
    images: int
    calibration: int
    top1_fp32: float
    top1_int8: float
    agreement: float
    max_rel_error: float  # of the logits, int8 vs fp32, over the split
    layers: list[LayerError]
    compiled: bool

    def to_text(self) -> str:
        kept = [e.name for e in self.layers if e.dtype != "int8"]
        lines = [f"{'layer':<28} {'kind':<6} {'int8 rel err':>12}  runs in"]
        lines += [f"{e.name:<28} {e.kind:<6} {e.rel_error:>12.4f}  {e.dtype}" for e in self.layers]
        how = "compiled, oneDNN int8 kernels" if self.compiled else "reference path, not compiled"
        lines += [
            f"calibration: {self.calibration} training images; {len(kept)} of "
            f"{len(self.layers)} layers kept out of int8"
            + (
                f" ({', '.join(f'{e.name}: {e.dtype}' for e in self.layers if e.dtype != 'int8')})"
                if kept
                else ""
            ),
            f"{self.split} ({self.images:,} images): top-1 fp32 {self.top1_fp32:.2f}%, "
            f"int8 {self.top1_int8:.2f}% ({how}); top-1 agreement {self.agreement:.2f}%; "
            f"max logit rel err {self.max_rel_error:.3g}",
            f"wrote {self.output}",
        ]
        return "\n".join(lines)


def _logits(
    model: Callable[[Tensor], Tensor], batches: Iterator[tuple[Tensor, Tensor]]
) -> tuple[Tensor, Tensor]:
    outs, labels = [], []
    with torch.no_grad():
        for x, y in batches:
            outs.append(model(x).float())
            labels.append(y)
    return torch.cat(outs), torch.cat(labels)


def calibration_images(
    p: Any, data: str | None, *, count: int, seed: int = 0, batch_size: int = 250
) -> Tensor:
    """``count`` training images of ``p``'s (a :class:`~resnetlab.infer.predict.Predictor`)
    data, a fixed random draw, preprocessed as at test time: ``(count, C, H, W)`` fp32. The
    same draw calibrates every int8 engine measured against ``resnetlab quantize``."""
    from resnetlab.data.datasets import eval_split_batches

    train = p.split("train", data)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    sample = train.subset(pick[: min(count, len(train))])
    batches = eval_split_batches(
        sample, p.preprocess, batch_size=batch_size, device=torch.device("cpu")
    )
    return torch.cat([x for x, _ in batches])


def evaluation_split(p: Any, data: str | None) -> tuple[str, Any]:
    """The split int8 is measured on: test, or val where the data has no test split."""
    from resnetlab.data.tensors import DataError

    try:
        return "test", p.split("test", data)
    except DataError:
        return "val", p.split("val", data)


def quantize_checkpoint(
    ckpt: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    data: str | None = None,
    calibration: int = 512,
    max_layer_error: float = MAX_LAYER_ERROR,
    compile: bool = True,
    batch_size: int = 250,
    seed: int = 0,
) -> QuantizeReport:
    """Quantize a checkpoint's model on ``calibration`` training images (a fixed random
    draw), write the ``.pt2`` file and measure both models on the test split (val where
    the data has none)."""
    from dataclasses import asdict

    from resnetlab.data.datasets import eval_split_batches
    from resnetlab.fileio import check_writable
    from resnetlab.infer.predict import Predictor

    if is_quantized_file(ckpt):  # it would load (eval does), but its graph is int8 already
        raise QuantizedFileError(
            f"{ckpt} is an int8 program already; quantize the checkpoint it came from"
        )
    target = check_writable(out)
    p = Predictor.load(ckpt, device="cpu", onnx=False)
    cal = calibration_images(p, data, count=calibration, seed=seed, batch_size=batch_size)
    split, evaluated = evaluation_split(p, data)
    from resnetlab.infer.fast import prepare

    layers = layer_sensitivity(
        prepare(p.model, channels_last=False),
        cal,
        max_layer_error=max_layer_error,
        keep=kept_dtype(),
    )
    program = quantize_program(
        p.model,
        cal,
        fp32_layers=[e.name for e in layers if e.dtype == "fp32"],
        bf16_layers=[e.name for e in layers if e.dtype == "bf16"],
    )
    net = QuantizedNet(program, compile=compile)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        return eval_split_batches(
            evaluated, p.preprocess, batch_size=batch_size, device=torch.device("cpu")
        )

    ref, labels = _logits(p.model.eval(), batches())
    q, _ = _logits(net, batches())
    report = QuantizeReport(
        output=target,
        split=split,
        images=len(labels),
        calibration=len(cal),
        top1_fp32=100 * float((ref.argmax(1) == labels).float().mean()),
        top1_int8=100 * float((q.argmax(1) == labels).float().mean()),
        agreement=100 * float((ref.argmax(1) == q.argmax(1)).float().mean()),
        max_rel_error=float((q - ref).abs().max() / ref.abs().max()),
        layers=layers,
        compiled=compile,
    )
    meta = {
        "model_name": p.config.model.name,
        "config": p.config.to_dict(),
        "classes": list(p.classes),
        "preprocess": asdict(p.preprocess),
        "data_size": list(p.data_size),
        "epoch": p.epoch,
        "source": str(ckpt),
        "calibration": report.calibration,
        "layers": [asdict(e) for e in layers],
        "measured": {
            k: getattr(report, k)
            for k in ("split", "images", "top1_fp32", "top1_int8", "agreement")
        },
    }
    save_quantized(program, target, meta)
    return report


def bench_quantized(
    path: str | os.PathLike[str],
    example: Tensor,
    *,
    engines: Sequence[str] | None = None,
    min_seconds: float = 2.0,
) -> Any:
    """Time a ``.pt2`` file's program on ``example``: ``int8`` (compiled) and
    ``int8-reference`` (as saved), each checked against the reference path's outputs."""
    from resnetlab.infer.fast import EngineResult, FastModel, time_runner

    program, _ = load_quantized(path)
    reference = QuantizedNet(program)
    expected = reference(example)
    results: list[EngineResult] = []
    runners: dict[str, Runner] = {}
    skipped: dict[str, str] = {}
    for engine in engines or ("int8", "int8-reference"):
        try:
            if engine not in ("int8", "int8-reference"):
                raise InvalidValueError(
                    f"a .pt2 file runs as int8 or int8-reference, not {engine!r}"
                )
            run = QuantizedNet(program, compile=True) if engine == "int8" else reference
            err = float((run(example) - expected).abs().max() / expected.abs().max())
            secs = time_runner(run, example, min_seconds=min_seconds)
        except Exception as exc:  # as in optimize_for_inference: skipped with its reason
            skipped[engine] = first_line(exc)[:120]
            continue
        runners[engine] = run
        results.append(EngineResult(engine, secs, example.shape[0], err))
    if not results:
        raise NoEngineError(f"no engine could run {path}: {skipped}")
    best = min(results, key=lambda r: r.seconds_per_batch)
    return FastModel(best.engine, runners[best.engine], results, skipped)
