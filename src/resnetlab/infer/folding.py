"""The preparation every inference engine starts from (:func:`prepare`): eval mode, BN folded
into the preceding conv (exact up to float rounding: y = γ(Wx + b − μ)/σ + β is one conv with
W' = γW/σ; :func:`fold_batchnorm`), frozen parameters, NHWC ("channels_last") memory layout.
:func:`randomize_batchnorm` gives BN layers the statistics that make a wrong fold show.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every conv→BN pair fused into one conv.

    Uses ``torch.fx`` to find the pairs wherever they are (stem, blocks, projections). A BN
    that does not directly follow a conv whose output goes nowhere else is kept (in a
    pre-activation unit only conv1 → bn2 folds).
    """
    from torch.fx.experimental.optimization import fuse

    fused: nn.Module = fuse(copy.deepcopy(model).eval(), inplace=True)
    return fused


def randomize_batchnorm(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """Give every BN layer non-trivial statistics and affine parameters, as a trained model
    has (a fresh model's μ=0, σ²=1, γ=1, β=0 would let a wrong fold pass unnoticed).
    In place; returns the model in eval mode. For tests and benchmarks."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                assert m.running_var is not None
                m.running_mean.copy_(
                    torch.empty_like(m.running_mean).uniform_(-0.5, 0.5, generator=g)
                )
                m.running_var.copy_(torch.empty_like(m.running_var).uniform_(0.5, 2.0, generator=g))
                if m.affine:
                    m.weight.uniform_(0.5, 1.5, generator=g)
                    m.bias.uniform_(-0.2, 0.2, generator=g)
    return model.eval()


def prepare(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """Eval mode, BN folded, frozen parameters, NHWC layout: the base of every engine."""
    m = fold_batchnorm(model)
    for p in m.parameters():
        p.requires_grad_(False)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return m
