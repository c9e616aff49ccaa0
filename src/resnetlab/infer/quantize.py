"""Post-training static int8 quantization with PyTorch's 2.x export flow (PT2E).

The flow (torchao's ``prepare_pt2e`` / ``convert_pt2e``: torch 2.13 no longer ships
``torch.ao.quantization.quantize_pt2e``):

1. BN folded into the convs (:func:`~resnetlab.infer.folding.prepare`), so each conv is quantized
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
4. Calibration, conversion to quantize/dequantize pairs, and a second export: the program
   that :mod:`~resnetlab.infer.int8_file` writes and reads.

This module owns the flow and running its program (:class:`QuantizedNet`, the ``int8``
engine); :mod:`~resnetlab.infer.int8_checkpoint` quantizes a checkpoint with it. Run as it
is, the program computes int8-rounded values in fp32 (the reference path: exact int8
semantics, fp32 speed); ``torch.compile`` with Inductor's ``freezing`` lowers each
dequantize → conv → quantize to oneDNN's int8 kernels (VNNI, AMX where present).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from resnetlab.errors import MissingExtraError

MAX_LAYER_ERROR = 0.05  # relative L2 error of a layer's output under int8 rounding
Runner = Callable[[Tensor], Tensor]


def torchao_pt2e() -> Any:
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
MAX_BATCH = 4096  # the largest batch the int8 programs take (their guards say so)


def _export(model: nn.Module, example: Tensor) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
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
    from resnetlab.infer.folding import prepare

    quantize_pt2e, xiq = torchao_pt2e()
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


# ---------------------------------------------------------------------- running
class QuantizedNet(nn.Module):
    """An exported int8 program as a module that ``eval``/``predict`` can call.

    The program's graph cannot switch train/eval modes (it is always inference), so
    :meth:`train` only records the flag. ``compile=True`` lowers to oneDNN int8 kernels on
    the first call of each batch shape (tens of seconds on a small CPU)."""

    def __init__(self, program: torch.export.ExportedProgram, *, compile: bool = False) -> None:
        super().__init__()
        self.graph = program.module()
        # The program's guards refuse a larger batch (ours: 4,096); forward runs one in pieces.
        self.max_batch: int | None = program_max_batch(program)
        self.compiled = compile
        self._run: Callable[[Tensor], Tensor] = (
            torch.compile(self.graph, dynamic=False) if compile else self.graph
        )

    def train(self, mode: bool = True) -> QuantizedNet:
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Logits of ``x``; a batch above :attr:`max_batch` runs in pieces of at most that
        (the same logits: the program works per image)."""
        n = self.max_batch
        with _freezing(self.compiled), torch.no_grad():
            if n is not None and len(x) > n:
                parts = torch.split(x, n)
                return torch.cat([self._run(part.float().contiguous()) for part in parts])
            out: Tensor = self._run(x.float().contiguous())
        return out


def program_max_batch(program: torch.export.ExportedProgram) -> int | None:
    """The largest batch ``program``'s guards accept: the upper bound of its first input's
    dynamic batch (``torch.export.Dim(max=…)``; 4,096 in our files), or its static batch;
    None where unbounded or not told."""
    users = set(program.graph_signature.user_inputs)
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in users]
    first = inputs[0] if inputs else None
    value = None if first is None else first.meta.get("val")
    if not isinstance(value, Tensor) or value.dim() == 0:
        return None
    size = value.shape[0]
    if isinstance(size, int):
        return size
    bound = program.range_constraints.get(size.node.expr)
    upper = getattr(bound, "upper", None)
    try:
        return int(upper) if upper is not None and math.isfinite(float(upper)) else None
    except (TypeError, ValueError, OverflowError):
        return None


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
