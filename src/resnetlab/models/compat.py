"""Loading torchvision/timm checkpoints into the matching resnetlab model.

For the variants torchvision ships, resnetlab's state dict has exactly torchvision's keys
and shapes, in order, so a published file loads with ``strict=True``. ResNet-50/101/152
checkpoints are trained with torchvision's "v1.5" stride placement, so they map to
``resnet50_v1_5`` etc.: the paper-placement ``resnet50`` would load the same tensors but
compute something else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnetlab.models.registry import create_model

# torchvision builder name → resnetlab model name.
TORCHVISION_NAMES: dict[str, str] = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50_v1_5",
    "resnet101": "resnet101_v1_5",
    "resnet152": "resnet152_v1_5",
    "wide_resnet50_2": "wide_resnet50_2",
    "wide_resnet101_2": "wide_resnet101_2",
    "resnext50_32x4d": "resnext50_32x4d",
    "resnext101_32x8d": "resnext101_32x8d",
    "resnext101_64x4d": "resnext101_64x4d",
    **{f"vgg{d}{bn}": f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")},
}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model (one-line message)."""


def resnetlab_name(torchvision_name: str) -> str:
    """The resnetlab model that matches a torchvision builder, e.g. ``resnet50`` →
    ``resnet50_v1_5``."""
    try:
        return TORCHVISION_NAMES[torchvision_name]
    except KeyError:
        known = ", ".join(sorted(TORCHVISION_NAMES))
        raise ValueError(
            f"no resnetlab match for torchvision model {torchvision_name!r}; known: {known}"
        ) from None


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state dict from a local ``.pth``/``.pt`` file with ``weights_only=True`` (no
    code runs from the file). Accepts a bare state dict or one wrapped under ``state_dict``
    or ``model``, and strips a DataParallel/DDP ``module.`` prefix."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        obj: Any = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and unsafe-global errors all land here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {p}: {first}") from err
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_torchvision_checkpoint(
    path: str | os.PathLike[str], model: str | nn.Module, **overrides: Any
) -> nn.Module:
    """Load a torchvision/timm checkpoint file into a resnetlab model, strictly.

    ``model`` is a torchvision builder name (``"resnet50"`` → ``resnet50_v1_5``), a
    resnetlab name, or a built module. Mismatched keys or shapes raise
    :class:`CheckpointError` naming the first few differences.
    """
    if isinstance(model, str):
        name = TORCHVISION_NAMES.get(model, model)
        model = create_model(name, **overrides)
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatches (first: {k} "
                f"{tuple(state[k].shape)} in file vs {tuple(own[k].shape)})"
            )
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
        raise CheckpointError(f"{path} does not fit this model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
    return model
