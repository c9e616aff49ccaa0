"""``resnetlab.create_model``: timm's call, with published weights.

Code written for ``timm.create_model`` runs as it is::

    model = resnetlab.create_model("resnet50.tv2_in1k", pretrained=True, num_classes=10,
                                   in_chans=1, drop_rate=0.2, drop_path_rate=0.05)

A name is a registered model (``resnet18``) or a catalogue name (``<model>.<tag>``,
``resnet50.tv2_in1k``: `resnetlab weights` lists them). ``pretrained=True`` loads the
catalogue entry's file (downloaded once against its SHA-256; offline, one line says where to
put it). A bare name takes the first catalogue entry made for exactly that model; where
timm's name means another network (``resnet50`` here is the paper's stride placement, timm's
and torchvision's is ``resnet50_v1_5``), it says so instead of loading weights into a network
they were not trained for (docs/interop.md, "Names that differ from timm's").

As in timm, ``num_classes`` other than the file's gives a fresh classifier, ``in_chans``
other than 3 adapts the first conv (summed for 1 channel, repeated and rescaled otherwise),
and ``model.pretrained_cfg`` says the input the weights expect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from torch import nn

from resnetlab.errors import InvalidValueError
from resnetlab.interop.compat import CheckpointError, load_pretrained
from resnetlab.interop.fact_sheet import PublishedWeights
from resnetlab.interop.published import fetch_weights
from resnetlab.interop.transforms import EvalTransform
from resnetlab.interop.weights import WEIGHTS, get_weights
from resnetlab.models import registry
from resnetlab.models.features import FeatureNet
from resnetlab.models.resnet import ResNet


def default_weights(name: str) -> PublishedWeights:
    """The catalogue entry ``pretrained=True`` loads for a bare model name, or a one-line
    :class:`CheckpointError` saying why there is none."""
    registry.get_entry(name)  # an unknown name fails with suggestions
    fits = [w for w in WEIGHTS if w.model == name and w.sha256]
    if fits:
        return fits[0]
    twins = [w.name for w in WEIGHTS if w.model == f"{name}_v1_5" and w.sha256]
    if twins:
        raise CheckpointError(
            f"resnetlab's {name} is the paper's network (stride on the first 1×1 conv of a "
            f"bottleneck); no published weights were trained for it. timm's and torchvision's "
            f"{name} is resnetlab's {name}_v1_5: create_model({twins[-1]!r}, pretrained=True) "
            f"(also: {', '.join(twins[:-1])})"
        )
    raise CheckpointError(
        f"no published weights fit {name} (`resnetlab weights` lists the catalogue); "
        "build it with pretrained=False"
    )


def pretrained_cfg(w: PublishedWeights, channels: int = 3) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` for a catalogue entry."""
    pp = w.preprocessing
    return {
        "tag": w.name.split(".", 1)[1],
        "name": w.name,
        "url": w.url,
        "sha256": w.sha256,
        "input_size": (channels, pp.crop, pp.crop),
        "interpolation": pp.transforms().interpolation,
        "crop_pct": pp.crop_pct,
        "mean": pp.mean,
        "std": pp.std,
        "num_classes": w.num_classes,
        "first_conv": "conv1",
        "classifier": "fc" if not w.model.startswith("vgg") else "classifier.6",
        "license": w.licence,
    }


def transform_of(model: nn.Module) -> EvalTransform:
    """The evaluation transform of ``model.pretrained_cfg`` (timm's ``resolve_data_config``
    + ``create_transform``): a callable on a PIL image."""
    cfg: dict[str, Any] = getattr(model, "pretrained_cfg", None) or {}
    if not cfg:
        raise InvalidValueError(f"{type(model).__name__} has no pretrained_cfg")
    channels, crop, _ = cfg["input_size"]
    return EvalTransform(
        load_side=round(crop / cfg["crop_pct"]),
        crop=crop,
        interpolation=cfg["interpolation"],
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        channels=channels,
    )


def _adapt_first_conv(model: nn.Module, in_chans: int) -> None:
    """timm's ``adapt_input_conv``: 1 channel sums the RGB filters; n repeats them and
    scales by 3/n, so a grey image gives the activations its RGB copy would."""
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(model, ResNet):
        raise InvalidValueError(f"in_chans={in_chans} with pretrained weights needs a ResNet")
    w = conv.weight.detach()
    if in_chans == 1:
        new_w = w.sum(dim=1, keepdim=True)
    else:
        reps = math.ceil(in_chans / w.shape[1])
        new_w = w.repeat(1, reps, 1, 1)[:, :in_chans] * (w.shape[1] / in_chans)
    new = nn.Conv2d(in_chans, conv.out_channels, 1, bias=False)
    # Same geometry as the old conv: copy its settings, then the adapted weight.
    new.kernel_size, new.stride, new.padding = conv.kernel_size, conv.stride, conv.padding
    new.weight = nn.Parameter(new_w.clone())
    model.conv1 = new
    model.spec = replace(model.spec, in_channels=in_chans)


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a model as ``timm.create_model`` does (module docstring); keywords are timm's or
    the spec's (:func:`resnetlab.models.create_model`)."""
    tagged = "." in name
    if not tagged and not pretrained:
        return registry.create_model(
            name, features_only=features_only, out_indices=out_indices, **kwargs
        )
    w = get_weights(name) if tagged else default_weights(name)
    opts = registry.timm_overrides(w.model, kwargs)
    num_classes = opts.pop("num_classes", w.num_classes)
    in_chans = opts.get("in_channels", 3)
    build = {**w.model_kwargs(), **opts}
    if pretrained:
        build.update(num_classes=w.num_classes, in_channels=3)
        model = registry.create_model(w.model, **build)
        model, _ = load_pretrained(fetch_weights(w), model, layout=w.layout)
        if in_chans != 3:
            _adapt_first_conv(model, in_chans)
        if num_classes != w.num_classes:
            model.reset_classifier(num_classes)  # type: ignore[operator]
    else:
        model = registry.create_model(w.model, **{**build, "num_classes": num_classes})
    setattr(model, "pretrained_cfg", pretrained_cfg(w, in_chans))  # noqa: B010 (VGG too)
    if features_only:
        return FeatureNet(model, out_indices, name=w.model)
    if out_indices is not None:
        raise InvalidValueError("out_indices chooses feature levels: give features_only=True too")
    return model
