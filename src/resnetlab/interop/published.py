"""A published checkpoint, by catalogue name or as a file, into a model plus what it expects.

Every command that takes a checkpoint comes here when the file is not a resnetlab training
checkpoint. A catalogue name is downloaded once into the cache against its SHA-256; a local
file is looked up in the catalogue by its SHA-256, so a renamed copy of akamaster's
``resnet20-12fca82f.th`` still comes with akamaster's layout and preprocessing. A file the
catalogue does not know needs the model's name, and its layout where the keys do not say.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from resnetlab.interop.compat import (
    AKAMASTER_NAMES,
    TIMM_NAMES,
    TORCHVISION_NAMES,
    CheckpointError,
    Layout,
    ParityReport,
    load_pretrained,
)
from resnetlab.interop.fact_sheet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    PublishedWeights,
)
from resnetlab.interop.foreign_files import (
    cache_path,
    checkpoint_cache,
    download_checkpoint,
    read_state_dict,
    sha256_of,
)
from resnetlab.interop.weights import find_by_sha256, get_weights
from resnetlab.models.registry import get_entry
from resnetlab.models.spec import ResNetSpec

LAYOUTS: tuple[Layout, ...] = ("torchvision", "timm", "akamaster")
_NAMES: dict[str, dict[str, str]] = {
    "torchvision": TORCHVISION_NAMES,
    "timm": TIMM_NAMES,
    "akamaster": AKAMASTER_NAMES,
}
# ``arch.tag``: what a catalogue name looks like (a file name has a known suffix instead).
_NAME = re.compile(r"[A-Za-z0-9_]+\.[A-Za-z0-9_]+")
_FILE_SUFFIXES = frozenset(
    {".pt", ".pth", ".th", ".safetensors", ".bin", ".ckpt", ".onnx", ".txt", ".png", ".jpg"}
)


@dataclass(frozen=True)
class LoadedWeights:
    """A published file loaded into a resnetlab model, and what came with it.

    ``assumed`` is true when the preprocessing is a guess (the file is not catalogued):
    ImageNet's mean/std at the model's native size, which commands then say.
    """

    model: nn.Module
    model_name: str  # the resnetlab model, e.g. resnet50_v1_5
    layout: Layout
    preprocessing: Preprocessing
    classes: tuple[str, ...]
    weights: PublishedWeights | None
    report: ParityReport
    path: Path
    assumed: bool
    # The create_model options the model was built with beyond its registered spec (the
    # entry's model_options, num_classes, in_channels): what rebuilds it from a config.
    options: dict[str, Any]


def is_weights_name(text: str) -> bool:
    """Whether ``text`` (not an existing path) is meant as a catalogue name."""
    return (
        _NAME.fullmatch(text) is not None
        and Path(text).suffix.lower() not in _FILE_SUFFIXES
        and not Path(text).exists()
    )


def fetch_weights(w: PublishedWeights) -> Path:
    """The entry's file from the cache, downloaded (hash-checked) the first time. Offline,
    one line says which file to put where.

    An entry without a published SHA-256 (timm's Hub files) is never downloaded: nothing is
    loaded unchecked behind the user's back. A file put by hand at the place the message
    names is used as it is, as a local file would be (``train`` logs its SHA-256).
    """
    if not w.sha256:
        target = checkpoint_cache() / "unverified" / w.name / w.file_name
        if target.is_file():
            return target
        raise CheckpointError(
            f"{w.name} has no published SHA-256 to check a download against, so it is not "
            f"downloaded; fetch {w.url} yourself and put it at {target}"
        )
    target, _ = cache_path(w.url, sha256=w.sha256)
    try:
        return download_checkpoint(w.url, sha256=w.sha256)
    except CheckpointError as err:
        if not str(err).startswith("cannot download"):
            raise  # a wrong hash, an unwritable cache: the message says it already
        raise CheckpointError(
            f"cannot download {w.name} ({w.url}); offline? fetch that file elsewhere and put "
            f"it at {target}"
        ) from err


def resolve(source: str | os.PathLike[str]) -> tuple[Path, PublishedWeights | None]:
    """A catalogue name or a file → the local file and its catalogue entry (if any)."""
    text = str(source)
    if is_weights_name(text):
        w = get_weights(text)
        return fetch_weights(w), w
    path = Path(text).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path, find_by_sha256(sha256_of(path))


def guess_layout(state: dict[str, Tensor]) -> Layout | None:
    """The layout the keys give away: akamaster calls the classifier ``linear``;
    torchvision's (and timm's plain ResNets') ``fc``, its VGG ``classifier``."""
    if "linear.weight" in state and "conv1.weight" in state:
        return "akamaster"
    if "fc.weight" in state or "classifier.0.weight" in state:
        return "torchvision"
    return None


def _head_classes(state: dict[str, Tensor]) -> int | None:
    matrices = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    return int(matrices[-1].shape[0]) if matrices else None


def _assumed_preprocessing(model_name: str) -> Preprocessing:
    """The usual convention for a model of this kind: CIFAR nets at 32×32, ImageNet nets
    resized to 256 and centre-cropped to 224; ImageNet's mean/std either way."""
    spec = get_entry(model_name).spec
    if isinstance(spec, ResNetSpec) and spec.stem == "cifar":
        return Preprocessing(32, None, "none", IMAGENET_MEAN, IMAGENET_STD)
    return Preprocessing(224, 256, "bilinear", IMAGENET_MEAN, IMAGENET_STD)


def load_published(
    source: str | os.PathLike[str],
    *,
    model: str | None = None,
    layout: Layout | None = None,
) -> LoadedWeights:
    """Load a catalogue name or a published file (zip or legacy ``torch.save``, ``.pth``,
    ``.th``, ``.pt``, ``.safetensors``; ``module.`` prefixes dropped; read with
    ``weights_only=True``) strictly into the resnetlab model it fits.

    ``model`` and ``layout`` are needed only for files the catalogue does not know, and
    ``layout`` only where the keys do not say (see :func:`guess_layout`).
    """
    path, entry = resolve(source)
    state = read_state_dict(path)
    name = model or (entry.model if entry else None)
    if name is None:
        raise CheckpointError(
            f"{path} is neither a resnetlab checkpoint nor a catalogued file (SHA-256 "
            f"{sha256_of(path)[:12]}…); give --model NAME (`resnetlab models`) and, if its "
            "keys do not say, --layout torchvision|timm|akamaster"
        )
    lay = layout or (entry.layout if entry else None) or guess_layout(state)
    if lay is None:
        raise CheckpointError(
            f"{path}: its keys do not say whose layout it is (first: {next(iter(state), '')}); "
            "give --layout torchvision|timm|akamaster"
        )
    resolved = _NAMES[lay].get(name, name)
    get_entry(resolved)  # an unknown model name fails here, with suggestions
    options: dict[str, Any] = {}
    if entry is not None and resolved == entry.model:
        options.update(entry.model_kwargs())  # e.g. chenyaofo's option-B shortcuts
    if (classes := _head_classes(state)) is not None:
        options["num_classes"] = classes
    if (stem := state.get("conv1.weight")) is not None and stem.ndim == 4:
        options["in_channels"] = int(stem.shape[1])
    net, report = load_pretrained(path, resolved, layout=lay, **options)
    n = options.get("num_classes", 0)
    known = entry.class_names() if entry else ()
    names = known if len(known) == n else tuple(f"class {i}" for i in range(n))
    pre = entry.preprocessing if entry else _assumed_preprocessing(resolved)
    return LoadedWeights(
        net, resolved, lay, pre, names, entry, report, path, entry is None, options
    )
