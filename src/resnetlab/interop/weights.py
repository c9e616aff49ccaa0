"""The weights catalogue: every published checkpoint a resnetlab model loads, as data.

Each entry is a fact sheet: where the file is (URL, SHA-256 prefix), how it is stored (file
format, key layout), what it expects as input (resize, crop, interpolation, mean/std), what
it predicts (classes), how well its publisher says it does (top-1/top-5, on what data) and
under which licence. Nothing here builds a model or reads a file: ``infer.published`` and
``train.build`` use the entries, ``resnetlab weights`` lists them. The facts and where each
was verified are in docs/interop.md ("The weights catalogue").

What an entry holds is :mod:`~resnetlab.interop.fact_sheet`'s; this module owns the entries
and finding one (by name, pattern or SHA-256). timm's Hub files are built from their table
in :mod:`~resnetlab.interop.timm_weights` (their tags' evaluation recipes and figures).

Names follow timm's ``<architecture>.<tag>`` convention (timm calls torchvision's first and
second ImageNet weights ``resnet50.tv_in1k`` and ``resnet50.tv2_in1k``).
"""

from __future__ import annotations

import difflib
import fnmatch

from resnetlab.interop.compat import CheckpointError
from resnetlab.interop.fact_sheet import (
    CIFAR10_CLASSES,
    IMAGENET1K_SOURCE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    PublishedWeights,
)
from resnetlab.interop.timm_weights import TIMM_WEIGHTS

_TV_SOURCE = "torchvision torchvision/models/resnet.py, *_Weights enums (meta and transforms)"
_TV_LICENCE = "BSD-3-Clause (torchvision); trained on ImageNet-1k, whose terms of access apply"
_TV_CLASSES = f"{IMAGENET1K_SOURCE}: torchvision.models._meta._IMAGENET_CATEGORIES"
_TV_FORMAT = "torch.save .pth (state dict)"


def _tv(
    name: str, model: str, url_name: str, resize: int, params: int, top1: float, top5: float
) -> PublishedWeights:
    """A torchvision ImageNet-1k entry: 224 crops, bilinear, ImageNet mean/std."""
    return PublishedWeights(
        name=name,
        model=model,
        layout="torchvision",
        url=f"https://download.pytorch.org/models/{url_name}",
        sha256=url_name.rsplit("-", 1)[1].split(".")[0],
        file_format=_TV_FORMAT,
        preprocessing=Preprocessing(224, resize, "bilinear", IMAGENET_MEAN, IMAGENET_STD),
        num_classes=1000,
        classes=(),
        classes_source=_TV_CLASSES,
        num_params=params,
        top1=top1,
        top5=top5,
        metric_data="ImageNet-1k val (50,000 images)",
        eval_data=None,  # resnetlab cannot name ImageNet's val set: any folder may be it
        licence=_TV_LICENCE,
        source=_TV_SOURCE,
    )


# The paper's test error (Table 6) and akamaster's, from the repository's README.
_AKAMASTER = {
    20: ("resnet20-12fca82f.th", 269_722, 8.27),
    32: ("resnet32-d509ac18.th", 464_154, 7.37),
    44: ("resnet44-014dd654.th", 658_586, 6.90),
    56: ("resnet56-4bfd9763.th", 853_018, 6.61),
    110: ("resnet110-1d1ed7c2.th", 1_727_962, 6.32),
    1202: ("resnet1202-f3b1deed.th", 19_421_274, 6.18),
}


def _akamaster(depth: int) -> PublishedWeights:
    """akamaster's CIFAR-10 net: 32×32 inputs, no resize, but ImageNet's mean/std (its
    trainer.py normalises CIFAR with them; CIFAR's own statistics would cost accuracy)."""
    file, params, error = _AKAMASTER[depth]
    return PublishedWeights(
        name=f"resnet{depth}.akamaster_cifar10",
        model=f"resnet{depth}",
        layout="akamaster",
        url=f"https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/{file}",
        sha256=file.rsplit("-", 1)[1].split(".")[0],
        file_format="torch.save legacy (pre-1.6, non-zip) .th: {'state_dict': module.* keys, …}",
        preprocessing=Preprocessing(32, None, "none", IMAGENET_MEAN, IMAGENET_STD),
        num_classes=10,
        classes=CIFAR10_CLASSES,
        classes_source="CIFAR-10 batches.meta (label order of the official distribution)",
        num_params=params,
        top1=round(100 - error, 2),
        top5=None,
        metric_data="CIFAR-10 test (10,000 images)",
        eval_data=("cifar10", "test"),
        licence="BSD-2-Clause (akamaster/pytorch_resnet_cifar10 LICENSE)",
        source="github.com/akamaster/pytorch_resnet_cifar10 README.md (table) and trainer.py",
    )


# chenyaofo/pytorch-cifar-models (README.md model zoo): per depth, for CIFAR-10 then
# CIFAR-100, the SHA-256 prefix in the file name, the parameter count (our option-B model's
# exact count; the README rounds: 0.27M …, which the tests check) and the README's top-1/top-5.
_CHENYAOFO = {
    20: (("4118986f", 272_474, 92.60, 99.81), ("23dac2f1", 278_324, 68.83, 91.01)),
    32: (("ef93fc4d", 466_906, 93.53, 99.77), ("84213ce6", 472_756, 70.16, 90.89)),
    44: (("2a3cabcb", 661_338, 94.01, 99.77), ("ffe32858", 667_188, 71.63, 91.58)),
    56: (("187c023a", 855_770, 94.37, 99.83), ("f2eff4c8", 861_620, 72.63, 91.94)),
}
# The mean/std each training log records (data.mean/std of the run that made the file).
_CHENYAOFO_NORM = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201)),
    "cifar100": ((0.507, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761)),
}


def _chenyaofo(depth: int, dataset: str) -> PublishedWeights:
    """chenyaofo's CIFAR-10/100 net: the paper's 6n+2 ResNet with option-B shortcuts (1×1
    conv + BN where the shape changes), torchvision's key names (its model is torchvision's
    ResNet cut down to three 16/32/64 stages), 32×32 inputs, each dataset's own mean/std.
    """
    ten = dataset == "cifar10"
    sha, params, top1, top5 = _CHENYAOFO[depth][0 if ten else 1]
    file = f"{dataset}_resnet{depth}-{sha}.pt"
    mean, std = _CHENYAOFO_NORM[dataset]
    data = "CIFAR-10" if ten else "CIFAR-100"
    return PublishedWeights(
        name=f"resnet{depth}.chenyaofo_{dataset}",
        model=f"resnet{depth}",
        layout="torchvision",
        url=f"https://github.com/chenyaofo/pytorch-cifar-models/releases/download/resnet/{file}",
        sha256=sha,
        file_format="torch.save .pt (bare state dict, torchvision's key names)",
        preprocessing=Preprocessing(32, None, "none", mean, std),
        num_classes=10 if ten else 100,
        classes=CIFAR10_CLASSES if ten else (),
        classes_source=(
            "CIFAR-10 batches.meta (label order of the official distribution)"
            if ten
            else "CIFAR-100 meta, fine_label_names (label order of the official distribution; "
            "resnetlab reads them from the dataset)"
        ),
        num_params=params,
        top1=top1,
        top5=top5,
        metric_data=f"{data} test (10,000 images; the best of 200 epochs, as its log shows)",
        eval_data=(dataset, "test"),
        licence="BSD-3-Clause (chenyaofo/pytorch-cifar-models LICENSE)",
        source=(
            "github.com/chenyaofo/pytorch-cifar-models README.md (model zoo), "
            f"pytorch_cifar_models/resnet.py, logs/{dataset}/resnet{depth}/default.log"
        ),
        model_options=(("shortcut", "B"),),
    )


WEIGHTS: tuple[PublishedWeights, ...] = (
    _tv("resnet18.tv_in1k", "resnet18", "resnet18-f37072fd.pth", 256, 11689512, 69.758, 89.078),
    _tv("resnet34.tv_in1k", "resnet34", "resnet34-b627a593.pth", 256, 21797672, 73.314, 91.420),
    _tv(
        "resnet50.tv_in1k", "resnet50_v1_5", "resnet50-0676ba61.pth", 256, 25557032, 76.130, 92.862
    ),
    _tv(
        "resnet50.tv2_in1k", "resnet50_v1_5", "resnet50-11ad3fa6.pth", 232, 25557032, 80.858, 95.434
    ),
    _tv(
        "resnet101.tv_in1k",
        "resnet101_v1_5",
        "resnet101-63fe2227.pth",
        256,
        44549160,
        77.374,
        93.546,
    ),
    _tv(
        "resnet101.tv2_in1k",
        "resnet101_v1_5",
        "resnet101-cd907fc2.pth",
        232,
        44549160,
        81.886,
        95.780,
    ),
    _tv(
        "resnet152.tv_in1k",
        "resnet152_v1_5",
        "resnet152-394f9c45.pth",
        256,
        60192808,
        78.312,
        94.046,
    ),
    _tv(
        "resnet152.tv2_in1k",
        "resnet152_v1_5",
        "resnet152-f82ba261.pth",
        232,
        60192808,
        82.284,
        96.002,
    ),
    _tv(
        "resnext50_32x4d.tv_in1k",
        "resnext50_32x4d",
        "resnext50_32x4d-7cdf4587.pth",
        256,
        25028904,
        77.618,
        93.698,
    ),
    _tv(
        "resnext50_32x4d.tv2_in1k",
        "resnext50_32x4d",
        "resnext50_32x4d-1a0047aa.pth",
        232,
        25028904,
        81.198,
        95.340,
    ),
    _tv(
        "resnext101_32x8d.tv_in1k",
        "resnext101_32x8d",
        "resnext101_32x8d-8ba56ff5.pth",
        256,
        88791336,
        79.312,
        94.526,
    ),
    _tv(
        "resnext101_32x8d.tv2_in1k",
        "resnext101_32x8d",
        "resnext101_32x8d-110c445d.pth",
        232,
        88791336,
        82.834,
        96.228,
    ),
    # torchvision's only ResNeXt-101 64x4d weights, trained with its new recipe (hence 232).
    _tv(
        "resnext101_64x4d.tv_in1k",
        "resnext101_64x4d",
        "resnext101_64x4d-173b62eb.pth",
        232,
        83455272,
        83.246,
        96.454,
    ),
    _tv(
        "wide_resnet50_2.tv_in1k",
        "wide_resnet50_2",
        "wide_resnet50_2-95faca4d.pth",
        256,
        68883240,
        78.468,
        94.086,
    ),
    _tv(
        "wide_resnet50_2.tv2_in1k",
        "wide_resnet50_2",
        "wide_resnet50_2-9ba9bcbe.pth",
        232,
        68883240,
        81.602,
        95.758,
    ),
    _tv(
        "wide_resnet101_2.tv_in1k",
        "wide_resnet101_2",
        "wide_resnet101_2-32ee1156.pth",
        256,
        126886696,
        78.848,
        94.284,
    ),
    _tv(
        "wide_resnet101_2.tv2_in1k",
        "wide_resnet101_2",
        "wide_resnet101_2-d733dc28.pth",
        232,
        126886696,
        82.510,
        96.020,
    ),
    *(_akamaster(d) for d in _AKAMASTER),
    *(_chenyaofo(d, data) for data in ("cifar10", "cifar100") for d in _CHENYAOFO),
    *TIMM_WEIGHTS,  # timm's Hub files for our architectures (timm_weights.py)
)


class UnknownWeightsError(CheckpointError):
    """A catalogue name that is not in the catalogue (one line, with the closest names)."""


def list_weights(pattern: str = "*") -> list[PublishedWeights]:
    """The catalogue entries whose name or model matches a shell-style ``pattern``."""
    return [
        w
        for w in WEIGHTS
        if fnmatch.fnmatchcase(w.name, pattern) or fnmatch.fnmatchcase(w.model, pattern)
    ]


def get_weights(name: str) -> PublishedWeights:
    """The entry called ``name``; an unknown name raises :class:`UnknownWeightsError`."""
    for w in WEIGHTS:
        if w.name == name:
            return w
    close = difflib.get_close_matches(name, [w.name for w in WEIGHTS], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownWeightsError(
        f"unknown weights {name!r}{hint} (`resnetlab weights` lists the catalogue)"
    )


def looks_like_weights_name(text: str) -> bool:
    """``arch.tag`` with no folder and no file suffix of a checkpoint: meant as a name."""
    return (
        "/" not in text
        and "\\" not in text
        and "." in text
        and not text.lower().endswith((".pt", ".pth", ".th", ".safetensors", ".bin", ".ckpt"))
    )


def find_by_sha256(digest: str) -> PublishedWeights | None:
    """The entry whose published SHA-256 (prefix) ``digest`` starts with, if any: a local
    copy of a published file is recognised by its content, whatever its name."""
    digest = digest.lower()
    for w in WEIGHTS:
        if w.sha256 and digest.startswith(w.sha256.lower()):
            return w
    return None
