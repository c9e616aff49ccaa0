"""What one entry of the weights catalogue (:mod:`~resnetlab.interop.weights`) records: the
fact sheet of a published checkpoint (:class:`PublishedWeights`: file, layout, evaluation
:class:`Preprocessing`, classes, published accuracy, licence, sources), and the constants
entries share (ImageNet's mean/std and 1,000 class names, CIFAR-10's classes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

from resnetlab.interop.compat import Layout
from resnetlab.interop.transforms import EvalTransform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)  # the label order of the official distribution


# The 1,000 ImageNet-1k (ILSVRC-2012) class names in the order of the sorted WordNet ids,
# which is the output order of every ImageNet-1k head here: torchvision's category list
# (torchvision/models/_meta.py, _IMAGENET_CATEGORIES), kept as published, with its two
# repeated names ("crane": 134 the bird, 517 the machine; "maillot": 638 and 639).
IMAGENET1K_SOURCE = "ImageNet-1k (resnetlab/data/imagenet1k_classes.txt)"
_IMAGENET1K_FILE = ("data", "imagenet1k_classes.txt")


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """ImageNet-1k's 1,000 class names, read once from the package's data file."""
    text = resources.files("resnetlab").joinpath(*_IMAGENET1K_FILE).read_text("utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != 1000:
        raise RuntimeError(f"resnetlab bug: {len(names)} ImageNet class names, not 1000")
    return names


@dataclass(frozen=True)
class Preprocessing:
    """What the publisher fed the network at evaluation time.

    ``resize``: the shorter side is resized to this many pixels first (``None``: images are
    used at their own size, as CIFAR's 32×32); then the centre ``crop``×``crop`` is cut.
    ``mean``/``std`` are per channel on the 0-1 scale.
    """

    crop: int
    resize: int | None
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def crop_pct(self) -> float:
        """The crop's share of the resized side (timm's ``crop_pct``; 224/256 = 0.875)."""
        return self.crop / self.resize if self.resize else 1.0

    def transforms(self, *, channels: int = 3) -> EvalTransform:
        """The evaluation transform as a callable on a PIL image (torchvision's
        ``weights.transforms()``): exactly what ``resnetlab predict`` feeds the model."""
        return EvalTransform(
            load_side=self.resize or self.crop,
            crop=self.crop,
            interpolation="bicubic" if self.interpolation == "bicubic" else "bilinear",
            mean=self.mean,
            std=self.std,
            channels=channels,
        )

    def describe(self) -> str:
        size = f"resize {self.resize} ({self.interpolation}), " if self.resize else "no resize, "
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        return f"{size}centre crop {self.crop}; mean ({mean}), std ({std})"


@dataclass(frozen=True)
class PublishedWeights:
    """One published checkpoint (:mod:`~resnetlab.interop.weights` says what each field is for)."""

    name: str  # catalogue name, ``<architecture>.<tag>``
    model: str  # the resnetlab model it loads into
    layout: Layout  # key layout, for models.compat.load_pretrained
    url: str
    # The SHA-256 or the prefix its publisher gives (in the file name); "" where no public
    # source gives one (timm's Hub files): such a file is never downloaded unchecked, only
    # used once put in place by hand (models.published.fetch_weights).
    sha256: str
    file_format: str
    preprocessing: Preprocessing
    num_classes: int
    classes: tuple[str, ...]  # empty when they are only named by their source
    classes_source: str
    # Published (torchvision: exact). akamaster's README rounds (0.27M …); the count here
    # is resnetlab's, which the tests check rounds to it.
    num_params: int
    top1: float | None  # published accuracy, %
    top5: float | None
    metric_data: str  # the data the published figures were measured on
    eval_data: tuple[str, str] | None  # that data as resnetlab names it: (source, split)
    licence: str
    source: str  # where these facts come from
    # The ``create_model`` options the file needs beyond ``num_classes``, as (name, value)
    # pairs (hashable): chenyaofo's CIFAR nets are the paper's ResNet-20 … 56 with
    # projection shortcuts, ``(("shortcut", "B"),)``. Every command that builds the model
    # for an entry builds it with these (:meth:`model_kwargs`).
    model_options: tuple[tuple[str, Any], ...] = ()

    def transforms(self) -> EvalTransform:
        """The publisher's evaluation transform, a callable on a PIL image (as torchvision's
        ``weights.transforms()``; timm's ``resolve_data_config`` + ``create_transform``)."""
        return self.preprocessing.transforms()

    def model_kwargs(self) -> dict[str, Any]:
        """What ``create_model(self.model, **…)`` needs to build the net this file fits."""
        return {**dict(self.model_options), "num_classes": self.num_classes}

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def class_names(self) -> tuple[str, ...]:
        """The names of the classes, in output order: ``classes`` where the entry lists
        them, ImageNet-1k's (:func:`imagenet_classes`) for ImageNet-1k heads, else ``()``."""
        if self.classes:
            return self.classes
        if self.num_classes == 1000 and self.classes_source.startswith(IMAGENET1K_SOURCE):
            return imagenet_classes()
        return ()

    def published(self) -> str:
        """The publisher's figures in words, e.g. ``top-1 69.76%, top-5 89.08% on …``."""
        parts = [f"top-{k} {v:.2f}%" for k, v in ((1, self.top1), (5, self.top5)) if v]
        return f"{', '.join(parts) or 'no published accuracy'} on {self.metric_data}"
