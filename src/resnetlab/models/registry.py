"""A small explicit model registry: ``create_model(name, **overrides)``, ``list_models``.

Duplicate names raise; an unknown name raises :class:`UnknownModelError` naming the
closest registered names.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from torch import nn

from resnetlab.errors import InvalidValueError
from resnetlab.models.resnet import ResNet
from resnetlab.models.spec import ResNetSpec, VGGSpec
from resnetlab.models.vgg import VGG

Spec = ResNetSpec | VGGSpec


class UnknownModelError(InvalidValueError):
    """Raised for a model name that is not registered."""


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, its spec, which family it belongs to and a one-line
    description with the source it follows."""

    name: str
    spec: Spec
    family: str
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, spec: Spec, *, family: str, description: str) -> ModelEntry:
    """Register ``spec`` under ``name``; a name can be registered only once."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    entry = ModelEntry(name, spec, family, description)
    _REGISTRY[name] = entry
    return entry


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(_unknown_message(name)) from None


def _unknown_message(name: str) -> str:
    if "." in name and name.split(".", 1)[0] in _REGISTRY:
        return (
            f"{name!r} is a catalogue name (published weights): resnetlab.create_model "
            f"takes it; resnetlab.models.create_model takes model names ({name.split('.')[0]!r})"
        )
    close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown model {name!r}{hint} (`resnetlab models` lists them all)"


def model_spec(name: str, **overrides: Any) -> Spec:
    """The spec of a registered model with ``overrides`` applied (validated)."""
    spec = get_entry(name).spec
    allowed = {f.name for f in fields(spec)}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise InvalidValueError(
            f"{name} has no option {', '.join(map(repr, unknown))}; "
            f"options are: {', '.join(sorted(allowed))}"
        )
    return replace(spec, **overrides)


def build(spec: Spec) -> nn.Module:
    """Build the network a spec describes."""
    if isinstance(spec, VGGSpec):
        return VGG(spec)
    return ResNet(spec)


# timm's keyword → our spec field, so code written for timm.create_model runs unchanged.
TIMM_KEYWORDS: dict[str, str] = {
    "in_chans": "in_channels",
    "drop_rate": "dropout",  # timm: dropout before the classifier
    "drop_path_rate": "drop_path",
}


def timm_overrides(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with timm's keywords (``in_chans``, ``drop_rate``, ``drop_path_rate``,
    ``global_pool``) renamed to our spec's fields; both spellings at once raise."""
    out = dict(overrides)
    for timm_name, ours in TIMM_KEYWORDS.items():
        if timm_name in out:
            if ours in out:
                raise InvalidValueError(f"give {timm_name} or {ours}, not both")
            out[ours] = out.pop(timm_name)
    if out.get("global_pool") == "":
        # timm's '' (no pooling) only makes sense with its unpooled head; say what we have.
        raise InvalidValueError(
            "global_pool '' (no pooling) is not built; use model.forward_features(x) for the "
            "unpooled feature map, or global_pool 'avg' | 'max'"
        )
    if isinstance(get_entry(name).spec, VGGSpec) and out.get("global_pool") == "avg":
        del out["global_pool"]  # VGG's pooling is its 7×7 adaptive average, already
    return out


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, e.g. ``create_model("resnet50", num_classes=10)``.

    timm's keywords are accepted as they are: ``in_chans``, ``drop_rate``,
    ``drop_path_rate``, ``global_pool`` (``"avg"``/``"max"``), ``num_classes=0`` (pooled
    features out). This builds fresh weights: ``pretrained=True`` and catalogue names
    (``"resnet50.tv2_in1k"``) are :func:`resnetlab.create_model`'s (which loads published
    files through :mod:`resnetlab.interop`, a layer above this one).

    Overrides are fields of the model's spec (:class:`~resnetlab.models.spec.ResNetSpec` or
    :class:`~resnetlab.models.spec.VGGSpec`): ``num_classes``, ``in_channels``,
    ``shortcut``, ``placement``, ``kernel_size``, ``width``, ``head``, … Build under
    ``torch.device("meta")`` to inspect a model without allocating its weights.

    ``features_only=True`` returns the backbone as timm does (a
    :class:`~resnetlab.models.features.FeatureNet`): its forward gives the feature maps of
    the levels ``out_indices`` chooses (default: all), its ``feature_info`` their channels
    and reductions.
    """
    if pretrained:
        raise InvalidValueError(
            f"resnetlab.models.create_model builds fresh weights; for published ones use "
            f"resnetlab.create_model({name!r}, pretrained=True) (docs/interop.md)"
        )
    if out_indices is not None and not features_only:
        raise InvalidValueError("out_indices chooses feature levels: give features_only=True too")
    model = build(model_spec(name, **timm_overrides(name, overrides)))
    if not features_only:
        return model
    from resnetlab.models.features import FeatureNet

    return FeatureNet(model, out_indices, name=name)


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``"resnet*"``), in registry
    order (families together, shallow to deep)."""
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def model_entries(pattern: str = "*") -> list[ModelEntry]:
    return [_REGISTRY[n] for n in list_models(pattern)]
