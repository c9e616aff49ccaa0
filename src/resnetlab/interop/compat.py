"""Loading published checkpoints (torchvision, timm, akamaster's CIFAR nets) into resnetlab.

For the variants torchvision ships, resnetlab's state dict has exactly torchvision's keys
and shapes, in order, so a published file loads with ``strict=True``. ResNet-50/101/152
checkpoints are trained with torchvision's "v1.5" stride placement, so they map to
``resnet50_v1_5`` etc.: the paper-placement ``resnet50`` would load the same tensors but
compute something else. timm's plain ResNets (7×7 stem, 1×1-conv downsample, stride on the
3×3) have torchvision's keys too; its ``c/d/s/t`` variants (deep stem, average-pool
downsample) do not, and their files fail with a parity report.

Safety: files are read with ``torch.load(weights_only=True)`` or as ``.safetensors``, so no
code from a file ever runs; a URL is downloaded only against a SHA-256 (prefix) and a file
with another hash is deleted, never loaded (:mod:`~resnetlab.interop.foreign_files`).

This module owns the key layouts (which of our models a foreign name is, akamaster's tensors
in our order), the key-by-key :class:`ParityReport`, and loading a file into a model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from resnetlab.errors import CheckpointError as CheckpointError
from resnetlab.errors import InvalidValueError
from resnetlab.interop.foreign_files import load_reason, read_state_dict
from resnetlab.models.registry import build, create_model, model_entries

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
# timm model name → resnetlab name: the ResNets above (timm's VGG has another head layout).
TIMM_NAMES: dict[str, str] = {k: v for k, v in TORCHVISION_NAMES.items() if "vgg" not in k}
# github.com/akamaster/pytorch_resnet_cifar10: the paper's CIFAR nets, option A shortcuts.
AKAMASTER_NAMES: dict[str, str] = {f"resnet{d}": f"resnet{d}" for d in (20, 32, 44, 56, 110, 1202)}

Layout = Literal["torchvision", "timm", "akamaster"]
_NAMES: dict[str, dict[str, str]] = {
    "torchvision": TORCHVISION_NAMES,
    "timm": TIMM_NAMES,
    "akamaster": AKAMASTER_NAMES,
}


def resnetlab_name(torchvision_name: str) -> str:
    """The resnetlab model that matches a torchvision builder, e.g. ``resnet50`` →
    ``resnet50_v1_5``."""
    try:
        return TORCHVISION_NAMES[torchvision_name]
    except KeyError:
        known = ", ".join(sorted(TORCHVISION_NAMES))
        raise InvalidValueError(
            f"no resnetlab match for torchvision model {torchvision_name!r}; known: {known}"
        ) from None


# --------------------------------------------------------------------------- parity


class ShapeMismatch(NamedTuple):
    key: str
    checkpoint: tuple[int, ...]
    model: tuple[int, ...]


@dataclass(frozen=True)
class ParityReport:
    """How a checkpoint's tensors line up with a model's state dict, key by key.

    ``missing``: in the model, not in the file; ``unexpected``: in the file, not in the
    model; ``head_classes``: ``(file, model)`` output counts when only the classifier's
    number of classes differs from the model's.
    """

    matched: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[ShapeMismatch, ...]
    head_classes: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One line: the counts, the first key of each kind, the classifier difference."""
        parts = [f"{len(self.matched)} tensors match"]
        if self.head_classes:
            file_n, model_n = self.head_classes
            parts.append(
                f"checkpoint head has {file_n} classes, model has {model_n} "
                f"(num_classes={file_n} builds a matching model)"
            )
        if self.mismatched:
            m = self.mismatched[0]
            parts.append(
                f"{len(self.mismatched)} shape mismatches (first: {m.key} "
                f"{m.checkpoint} in file vs {m.model})"
            )
        if self.missing:
            parts.append(f"{len(self.missing)} missing keys (first: {self.missing[0]})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected keys (first: {self.unexpected[0]})")
        return "; ".join(parts)

    def render(self, *, show_matched: bool = False) -> str:
        """A table, one tensor a row: what differs, and with ``show_matched`` what matches."""
        rows = [
            ("shape", m.key, f"file {m.checkpoint} vs model {m.model}") for m in self.mismatched
        ]
        rows += [("missing", k, "in the model only") for k in self.missing]
        rows += [("unexpected", k, "in the file only") for k in self.unexpected]
        if show_matched:
            rows += [("ok", k, "") for k in self.matched]
        width = max((len(k) for _, k, _ in rows), default=0)
        lines = [f"  {kind:<10}  {key:<{width}}  {note}".rstrip() for kind, key, note in rows]
        return "\n".join([self.summary(), *lines])

    def __str__(self) -> str:
        return self.render()


def parity_report(state: Mapping[str, Tensor], model: nn.Module) -> ParityReport:
    """Compare a state dict with ``model.state_dict()`` key by key (nothing is loaded)."""
    own = model.state_dict()
    common = [k for k in own if k in state]
    wrong = tuple(
        ShapeMismatch(k, tuple(state[k].shape), tuple(own[k].shape))
        for k in common
        if state[k].shape != own[k].shape
    )
    bad = {m.key for m in wrong}
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    head = None
    if linears and f"{linears[-1]}.weight" in bad:
        w = next(m for m in wrong if m.key == f"{linears[-1]}.weight")
        if len(w.checkpoint) == 2 and w.checkpoint[1:] == w.model[1:]:
            head = (w.checkpoint[0], w.model[0])
    return ParityReport(
        matched=tuple(k for k in common if k not in bad),
        missing=tuple(k for k in own if k not in state),
        unexpected=tuple(k for k in state if k not in own),
        mismatched=wrong,
        head_classes=head,
    )


# --------------------------------------------------------------------------- naming


def model_name_of(model: nn.Module) -> str:
    """The registered name a built model is (its spec up to classes, channels and
    regularisation), else its class name."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return type(model).__name__
    for e in model_entries():
        if type(e.spec) is not type(spec):
            continue
        same: dict[str, Any] = {"num_classes": spec.num_classes, "in_channels": spec.in_channels}
        if hasattr(spec, "drop_path"):
            same |= {"dropout": spec.dropout, "drop_path": spec.drop_path}
        if replace(e.spec, **same) == spec:
            return e.name
    return type(model).__name__


def _stage_blocks(state: Mapping[str, Tensor]) -> tuple[int, ...]:
    """Blocks per residual stage, read from the keys (``layer2.3.…`` → stage 2 has ≥ 4)."""
    found: dict[int, set[int]] = {}
    for key in state:
        head, _, rest = key.partition(".")
        if head.startswith("layer") and head[5:].isdigit():
            block = rest.partition(".")[0]
            if block.isdigit():
                found.setdefault(int(head[5:]), set()).add(int(block))
    return tuple(len(found[i]) for i in sorted(found))


def architectures_of(state: Mapping[str, Tensor]) -> tuple[list[str], dict[str, Any]]:
    """The registered models whose every tensor a state dict (our key names) fits, and the
    ``num_classes``/``in_channels`` it was built with. Several names can fit one file
    (``resnet50`` and ``resnet50_v1_5`` have the same tensors; the stride differs)."""
    opts: dict[str, Any] = {}
    matrices = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    if matrices:
        opts["num_classes"] = int(matrices[-1].shape[0])
    first = next((v for v in state.values() if v.ndim == 4), None)
    if first is not None:
        opts["in_channels"] = int(first.shape[1])
    blocks = _stage_blocks(state)
    names = []
    for e in model_entries():
        if getattr(e.spec, "layers", ()) != blocks:
            continue  # VGG: blocks == () and layers absent; ResNets: same stages only
        try:
            with torch.device("meta"):
                net = build(replace(e.spec, **opts))
        except InvalidValueError:
            continue
        if parity_report(state, net).ok:
            names.append(e.name)
    return names, opts


def mismatch_message(
    source: str | os.PathLike[str], state: Mapping[str, Tensor], model: nn.Module
) -> str | None:
    """One line for a checkpoint that is another registered architecture than ``model``:
    both names, how many tensors match, and the ``--model`` (or ``create_model`` name) that
    fits the file; ``None`` when no registered model fits it either."""
    fits, opts = architectures_of(state)
    own = model_name_of(model)
    if not fits or own in fits:
        return None
    matched = len(parity_report(state, model).matched)
    n = opts.get("num_classes")
    held = " or ".join(fits[:3]) + (f" ({n} classes)" if n else "")
    return (
        f"{source} holds a {held}, not a {own}: only {matched} of {len(model.state_dict())} "
        f"tensors match; use --model {fits[0]} (create_model({fits[0]!r}))"
    )


# --------------------------------------------------------------------------- loading


def from_akamaster(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """akamaster's CIFAR ResNet tensors (``module.`` already stripped) → resnetlab's.

    Names: akamaster's ``linear`` is our ``fc``; everything else is the same. Channels:
    akamaster's option-A shortcut zero-pads the identity on *both* sides (``planes // 4``
    channels each), ours appends the zeros, so after each widening the residual stream
    holds the same channels in another order. The stream's tensors (each block's ``conv2``
    and ``bn2`` outputs, the next ``conv1`` inputs, the classifier inputs) are permuted to
    our order, so the converted net computes exactly what the original does.
    """
    if "linear.weight" not in state or "conv1.weight" not in state:
        return dict(state)  # not this layout: the parity report will say what is there
    if any(".shortcut." in k for k in state):
        raise CheckpointError(
            "an akamaster option-B checkpoint (projection shortcuts): only option A, the "
            "paper's CIFAR nets, converts"
        )
    out = {("fc." + k[7:] if k.startswith("linear.") else k): v for k, v in state.items()}
    try:
        # order[i] = the akamaster channel that is our channel i of the residual stream.
        order = torch.arange(out["conv1.weight"].shape[0])
        stage = 1
        while f"layer{stage}.0.conv1.weight" in out:
            entering = order
            width = out[f"layer{stage}.0.conv1.weight"].shape[0]
            if width != len(entering):
                pad = width // 4
                if len(entering) + 2 * pad != width:
                    raise InvalidValueError(f"layer{stage} widens {len(entering)} → {width}")
                moved = entering + pad
                kept = set(moved.tolist())
                rest = torch.tensor([c for c in range(width) if c not in kept])
                order = torch.cat([moved, rest])
            block = 0
            while (p := f"layer{stage}.{block}.") + "conv1.weight" in out:
                inputs = entering if block == 0 else order
                out[p + "conv1.weight"] = out[p + "conv1.weight"][:, inputs]
                out[p + "conv2.weight"] = out[p + "conv2.weight"][order]
                for name in ("weight", "bias", "running_mean", "running_var"):
                    if p + "bn2." + name in out:
                        out[p + "bn2." + name] = out[p + "bn2." + name][order]
                block += 1
            stage += 1
        out["fc.weight"] = out["fc.weight"][:, order]
    except (ValueError, IndexError, RuntimeError) as err:
        raise CheckpointError(
            f"not an akamaster option-A CIFAR ResNet: {load_reason(err)}"
        ) from err
    return out


def load_pretrained(
    source: str | os.PathLike[str],
    model: str | nn.Module,
    *,
    layout: Layout = "torchvision",
    sha256: str | None = None,
    strict: bool = True,
    **overrides: Any,
) -> tuple[nn.Module, ParityReport]:
    """Load a published checkpoint (a local file or an http(s) URL) into a resnetlab model.

    ``model`` is a name in ``layout``'s convention (torchvision/timm ``"resnet50"`` →
    ``resnet50_v1_5``; akamaster ``"resnet56"``), a resnetlab name, or a built module;
    ``overrides`` (``num_classes=…``) go to :func:`create_model`. With ``strict=True`` any
    difference raises a one-line :class:`CheckpointError`; with ``strict=False`` the tensors
    that fit are loaded and the rest keep their fresh values (e.g. a new 10-class head).
    Returns the model and the :class:`ParityReport` (``print(report)`` shows every row).
    """
    label = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = create_model(_NAMES[layout].get(model, model), **overrides)
    elif overrides:
        raise InvalidValueError(f"options {sorted(overrides)} need a model name, not a built model")
    state = read_state_dict(source, sha256=sha256)
    if layout == "akamaster":
        state = from_akamaster(state)
    # Files saved before PyTorch 0.4.1 (akamaster's, torchvision's first ones) have no BN
    # batch counters; they matter only for momentum=None, so start them at 0 as torch does.
    for key in model.state_dict():
        stats = key.removesuffix("num_batches_tracked") + "running_mean"
        if key.endswith(".num_batches_tracked") and key not in state and stats in state:
            state[key] = torch.zeros((), dtype=torch.long)
    report = parity_report(state, model)
    what = f"{source} does not fit {label}"
    head_swap = report.head_classes and len(report.mismatched) == 2
    head_swap = head_swap and not report.missing and not report.unexpected
    # Not a head swap: where the file is another registered architecture, name both and
    # the model that fits.
    if not report.ok and not head_swap and (other := mismatch_message(source, state, model)):
        raise CheckpointError(other)
    if strict and not report.ok:
        raise CheckpointError(
            f"{what}: {report.summary()} (strict=False loads what fits; parity_report() "
            "lists every tensor)"
        )
    model.load_state_dict({k: state[k] for k in report.matched}, strict=report.ok)
    return model, report


def load_torchvision_checkpoint(
    source: str | os.PathLike[str],
    model: str | nn.Module,
    *,
    sha256: str | None = None,
    **overrides: Any,
) -> nn.Module:
    """Load a torchvision/timm checkpoint into a resnetlab model, strictly (see
    :func:`load_pretrained`); mismatched keys or shapes raise :class:`CheckpointError`."""
    return load_pretrained(source, model, sha256=sha256, **overrides)[0]
