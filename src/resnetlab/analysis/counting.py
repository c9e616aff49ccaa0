"""Counting parameters and multiply-adds, layer by layer, with a real (or meta) forward pass.

Two multiply-add conventions, both stated wherever a number is printed:

- **torchinfo "mult-adds"** (``macs``): for each ``weight``/``bias`` parameter of a leaf
  layer, its element count times the output positions it applies to, for the whole batch —
  convolutions: ``params × N × H_out × W_out``; every other layer (Linear, BatchNorm):
  ``params × N``. This is what torchinfo prints as "Total mult-adds" (7.72 G for
  ResNet-50 at 2×3×224×224).
- **conv/linear MACs** (``conv_macs``): multiply-accumulates of convolutions and linear
  layers only, weights only — exactly ``torch.utils.flop_counter.FlopCounterMode`` FLOPs / 2,
  the convention of the paper's Table 1 and of torchvision's published GFLOPs.

Run the forward on the ``meta`` device (build the model under ``torch.device("meta")``)
to count any model instantly without allocating weights or doing arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from resnetlab.errors import InvalidValueError, first_line


class ShapeError(InvalidValueError):
    """The model cannot run on the given input size."""


@dataclass
class LayerCall:
    """One call of one module during the forward pass (a module called twice gives two)."""

    name: str  # dotted path from the root ("layer1.0.conv1"); "" for the root
    type: str  # class name
    depth: int  # nesting at call time: 0 for the root, 1 for its children, …
    is_leaf: bool  # a module without children
    recursive: bool  # this module was already called earlier (its parameters counted once)
    params: int  # parameters of the module and all its children
    trainable: int
    output_shape: tuple[int, ...] | None = None
    output_bytes: int = 0
    macs: int = 0  # torchinfo convention; for a container: the sum over its leaf calls
    conv_macs: int = 0  # conv/linear weights only (flop_counter convention)
    children_macs: list[int] = field(default_factory=list, repr=False)


def count_params(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _first_tensor(out: Any) -> Tensor | None:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, list | tuple):
        for item in out:
            t = _first_tensor(item)
            if t is not None:
                return t
    if isinstance(out, dict):
        for item in out.values():
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


def leaf_macs(module: nn.Module, out_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(torchinfo mult-adds, conv/linear MACs)`` of one leaf call with this output shape."""
    if not out_shape:
        return 0, 0
    is_conv = "Conv" in type(module).__name__
    macs = 0
    for pname, p in module.named_parameters(recurse=False):
        n = p.numel()
        if pname in ("weight", "bias"):
            if is_conv:
                macs += n * out_shape[0] * math.prod(out_shape[2:])
            else:
                macs += n * out_shape[0]
        elif "weight" in pname or "bias" in pname:
            macs += n * math.prod(out_shape[:2])
    conv_macs = 0
    if isinstance(module, nn.modules.conv._ConvNd):
        conv_macs = module.weight.numel() * out_shape[0] * math.prod(out_shape[2:])
    elif isinstance(module, nn.Linear):
        conv_macs = module.weight.numel() * (math.prod(out_shape) // module.out_features)
    return macs, conv_macs


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, was_training in modes:
            m.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def trace_calls(
    model: nn.Module, input_size: tuple[int, ...], *, dtype: torch.dtype = torch.float32
) -> list[LayerCall]:
    """Run one forward pass on zeros of ``input_size`` and record every module call.

    The model runs in eval mode under ``no_grad`` on its own device (``meta`` works) and
    is left as it was. Raises :class:`ShapeError` if the model rejects the input.
    """
    names = {id(m): n for n, m in model.named_modules()}
    seen: set[int] = set()
    calls: list[LayerCall] = []
    stack: list[LayerCall] = []
    handles: list[RemovableHandle] = []

    def pre_hook(module: nn.Module, _inputs: Any) -> None:
        recursive = id(module) in seen
        seen.add(id(module))
        call = LayerCall(
            name=names.get(id(module), "?"),
            type=type(module).__name__,
            depth=len(stack),
            is_leaf=not any(True for _ in module.children()),
            recursive=recursive,
            params=count_params(module),
            trainable=count_params(module, trainable_only=True),
        )
        calls.append(call)
        stack.append(call)

    def post_hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        call = stack.pop()
        out = _first_tensor(output)
        if out is not None:
            call.output_shape = tuple(out.shape)
            call.output_bytes = out.numel() * out.element_size()
        if call.is_leaf and call.output_shape is not None:
            call.macs, call.conv_macs = leaf_macs(module, call.output_shape)
            for parent in stack:
                parent.macs += call.macs
                parent.conv_macs += call.conv_macs

    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    x = torch.zeros(input_size, dtype=dtype, device=model_device(model))
    try:
        with _eval_mode(model), torch.no_grad():
            model(x)
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        raise ShapeError(
            f"input of size {tuple(input_size)} does not fit this model: {first_line(err)}"
        ) from err
    finally:
        for h in handles:
            h.remove()
    return calls


@dataclass(frozen=True)
class Totals:
    """Whole-model figures for one input size (bytes are float32 unless stated)."""

    params: int
    trainable: int
    macs: int  # torchinfo convention, whole batch
    conv_macs: int  # flop_counter convention, whole batch
    input_bytes: int
    activation_bytes: int  # torchinfo's forward/backward estimate
    param_bytes: int

    @property
    def non_trainable(self) -> int:
        return self.params - self.trainable

    @property
    def total_bytes(self) -> int:
        return self.input_bytes + self.activation_bytes + self.param_bytes


def totals(model: nn.Module, input_size: tuple[int, ...], calls: list[LayerCall]) -> Totals:
    leaves = [c for c in calls if c.is_leaf]
    input_elem = torch.empty((), dtype=torch.float32).element_size()
    return Totals(
        params=count_params(model),
        trainable=count_params(model, trainable_only=True),
        macs=sum(c.macs for c in leaves),
        conv_macs=sum(c.conv_macs for c in leaves),
        input_bytes=math.prod(input_size) * input_elem,
        # torchinfo: outputs of every layer that has parameters, ×2 for their gradients.
        activation_bytes=sum(2 * c.output_bytes for c in leaves if c.params > 0),
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
    )
