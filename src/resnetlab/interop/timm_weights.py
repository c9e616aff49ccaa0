"""timm's ImageNet-1k weights for the architectures resnetlab builds, as catalogue entries.

timm's plain ResNets, ResNeXts and Wide ResNets (7×7 stem, 1×1-conv downsample, stride in
the 3×3 conv of a bottleneck) have torchvision's module names, so every file here loads
key for key into a resnetlab model: ResNet-50/101/152 into the ``_v1_5`` models. Its other
variants (``resnet50d``, ``resnet50s``, ``resnetaa50``, ``resnetblur50``, ``resnet50_gn``,
SE-/ECA- nets …) have other stems, blocks or norms and are left out.

Each entry is a row of :data:`_ROWS` (timm's published top-1/top-5 for one file) and the
recipe of its tag (:data:`RECIPES`: how timm's pretrained cfg evaluates it). The facts and
where each was read are in docs/interop.md ("The weights catalogue"). timm's re-hosted
torchvision files (``tv_in1k``/``tv2_in1k``) are not here: the catalogue has torchvision's
own, under the same names, with their published hashes (:mod:`~resnetlab.interop.weights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from resnetlab.interop.fact_sheet import (
    IMAGENET1K_SOURCE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    PublishedWeights,
)

# Where the facts were read (commits as this project's source tools name them).
CSV_SOURCE = "results/results-imagenet.csv (huggingface/pytorch-image-models 0173a139)"
CFG_SOURCE = "timm/models/resnet.py default_cfgs (rwightman/timm 8f67ba60)"


@dataclass(frozen=True)
class TimmRecipe:
    """How timm evaluates a tag's weights, from the tag's pretrained cfg.

    ``test``/``crop_pct`` are the cfg's ``test_input_size``/``test_crop_pct`` (or
    ``input_size``/``crop_pct`` where it has no test values): what results-imagenet.csv
    was measured at, so the catalogue keeps them. ``train`` is the cfg's ``input_size``
    for weights timm trained itself, ``None`` for ported ones (Gluon's, Facebook's),
    whose training size the cfg does not give. ``licence`` is the cfg's ``license`` field,
    where it has one (otherwise the Hub model card's applies).
    """

    cfg: str  # the cfg helper in timm/models/resnet.py (and overrides) that builds the tag
    train: int | None
    test: int
    crop_pct: float
    interpolation: str
    licence: str | None = None

    @property
    def resize(self) -> int:
        """timm's evaluation resize: the shorter side to floor(test / crop_pct)."""
        return math.floor(self.test / self.crop_pct)


_RCFG = TimmRecipe("_rcfg", 224, 288, 1.0, "bicubic")  # "ResNet strikes back" and kin
_TTCFG = TimmRecipe("_ttcfg", 224, 288, 0.95, "bicubic")  # timm's older recipes
_FB = TimmRecipe("_cfg", None, 224, 0.875, "bilinear", "CC-BY-NC-4.0")  # Facebook's, ported

# Tag → recipe; "<arch>.<tag>" keys are per-file overrides of the tag's recipe.
RECIPES: dict[str, TimmRecipe] = {
    "a1": _RCFG,
    "a2": _RCFG,
    "a3": TimmRecipe("_r3cfg", 160, 224, 0.95, "bicubic"),
    "a1h": _RCFG,
    # Trained at 176 and evaluated at 224 without a crop margin (its cfg's overrides).
    "resnet50.a1h": TimmRecipe("_rcfg + overrides", 176, 224, 1.0, "bicubic"),
    "b1k": _RCFG,
    "b2k": _RCFG,
    "c1": _RCFG,
    "c2": _RCFG,
    "d": _RCFG,
    "ram": _TTCFG,
    "ra": _TTCFG,
    "bt": _TTCFG,
    "racm": _TTCFG,
    "am": TimmRecipe("_tcfg", 224, 224, 0.875, "bicubic"),
    "gluon": TimmRecipe("_gcfg", None, 224, 0.875, "bicubic"),  # GluonCV's v1b, ported
    "fb_ssl_yfcc100m_ft": _FB,
    "fb_swsl_ig1b_ft": _FB,
    "fb_wsl_ig1b_ft": _FB,
}  # fmt: skip

# timm's architecture → the resnetlab model its files load into, and that model's exact
# parameter count (results-imagenet.csv's param_count rounds it: 11.69, 21.80, 25.56 … M).
ARCHITECTURES: dict[str, tuple[str, int]] = {
    "resnet18": ("resnet18", 11_689_512),
    "resnet34": ("resnet34", 21_797_672),
    "resnet50": ("resnet50_v1_5", 25_557_032),
    "resnet101": ("resnet101_v1_5", 44_549_160),
    "resnet152": ("resnet152_v1_5", 60_192_808),
    "resnext50_32x4d": ("resnext50_32x4d", 25_028_904),
    "resnext101_32x8d": ("resnext101_32x8d", 88_791_336),
    "resnext101_64x4d": ("resnext101_64x4d", 83_455_272),
    "wide_resnet50_2": ("wide_resnet50_2", 68_883_240),
}

# (architecture, tag, top-1, top-5): the file's row of results-imagenet.csv, measured at
# its recipe's test size and crop. The RSB A1/A2/A3 rows first, as the catalogue had them.
_RSB_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d")
_RSB = {
    "a1": ((73.158, 91.026), (77.918, 93.766), (81.214, 95.102), (82.322, 95.632),
           (82.732, 95.720), (81.466, 95.174)),
    "a2": ((72.372, 90.596), (77.158, 93.274), (80.772, 94.988), (82.236, 95.730),
           (82.608, 95.752), (81.304, 95.096)),
    "a3": ((68.254, 88.176), (72.970, 91.108), (78.048, 93.780), (79.814, 94.606),
           (80.546, 95.000), (79.268, 94.306)),
}  # fmt: skip
_ROWS: tuple[tuple[str, str, float, float], ...] = (
    *(
        (arch, tag, top1, top5)
        for tag, figures in _RSB.items()
        for arch, (top1, top5) in zip(_RSB_ARCHS, figures, strict=True)
    ),
    ("resnet18", "gluon", 70.838, 89.754),
    ("resnet18", "fb_ssl_yfcc100m_ft", 72.594, 91.418),
    ("resnet18", "fb_swsl_ig1b_ft", 73.282, 91.732),
    ("resnet34", "bt", 76.480, 93.354),
    ("resnet34", "gluon", 74.578, 91.984),
    ("resnet50", "a1h", 80.676, 95.306),
    ("resnet50", "b1k", 80.706, 95.432),
    ("resnet50", "b2k", 80.454, 95.318),
    ("resnet50", "c1", 80.912, 95.552),
    ("resnet50", "c2", 80.870, 95.534),
    ("resnet50", "d", 80.972, 95.430),
    ("resnet50", "ram", 79.976, 95.052),
    ("resnet50", "ra", 79.836, 94.966),
    ("resnet50", "bt", 79.640, 94.892),
    ("resnet50", "am", 78.998, 94.396),
    ("resnet50", "gluon", 77.580, 93.718),
    ("resnet50", "fb_ssl_yfcc100m_ft", 79.234, 94.826),
    ("resnet50", "fb_swsl_ig1b_ft", 81.182, 95.992),
    ("resnet101", "a1h", 82.778, 96.310),
    ("resnet101", "gluon", 79.310, 94.522),
    ("resnet152", "a1h", 83.450, 96.538),
    ("resnet152", "gluon", 79.694, 94.736),
    ("resnext50_32x4d", "a1h", 82.014, 95.934),
    ("resnext50_32x4d", "ra", 80.698, 95.390),
    ("resnext50_32x4d", "gluon", 79.360, 94.430),
    ("resnext50_32x4d", "fb_ssl_yfcc100m_ft", 80.338, 95.398),
    ("resnext50_32x4d", "fb_swsl_ig1b_ft", 82.174, 96.222),
    ("resnext101_32x8d", "fb_wsl_ig1b_ft", 82.698, 96.632),
    ("resnext101_32x8d", "fb_swsl_ig1b_ft", 84.302, 97.176),
    ("resnext101_32x8d", "fb_ssl_yfcc100m_ft", 81.606, 96.040),
    ("resnext101_64x4d", "c1", 83.156, 96.374),
    ("resnext101_64x4d", "gluon", 80.600, 94.992),
    ("wide_resnet50_2", "racm", 82.280, 96.064),
)

# The Apache-2.0 files whose Hub page (huggingface.co/timm/<name>) was read for its licence;
# the others' licence is assumed to be the same and says so (docs/interop.md lists them).
CARDS_READ = frozenset(
    {f"resnet18.{t}_in1k" for t in ("a1", "a3", "gluon")}
    | {f"resnet34.{t}_in1k" for t in ("a1", "a3", "bt", "gluon")}
    | {f"resnet50.{t}_in1k" for t in ("a1", "a2", "a1h", "b1k", "c1", "c2", "d", "ram", "ra", "bt")}
    | {"resnet101.a2_in1k", "resnet101.a1h_in1k", "resnet152.a1_in1k", "resnet152.a1h_in1k"}
    | {f"resnext50_32x4d.{t}_in1k" for t in ("a1", "a2", "a3", "a1h", "ra", "gluon")}
    | {"resnext101_64x4d.gluon_in1k", "wide_resnet50_2.racm_in1k"}
)  # fmt: skip


def recipe_of(arch: str, tag: str) -> TimmRecipe:
    """The recipe of one file: its own override, else its tag's."""
    return RECIPES.get(f"{arch}.{tag}", RECIPES[tag])


def _licence(name: str, recipe: TimmRecipe) -> str:
    """The cfg's licence where it names one (Facebook's non-commercial weights), else the
    model card's, marked as assumed where that card was not read."""
    if recipe.licence:
        return (
            f"{recipe.licence} (timm's pretrained cfg: non-commercial use only); "
            "fine-tuned on ImageNet-1k, whose terms apply"
        )
    card = "the Hub model card" if name in CARDS_READ else "assumed, as on timm's other cards"
    return f"Apache-2.0 ({card}); trained on ImageNet-1k, whose terms apply"


def _metric_data(recipe: TimmRecipe) -> str:
    """What the published figures were measured on, and the training size where known."""
    trained = f" (trained at {recipe.train})" if recipe.train else ""
    return f"ImageNet-1k val (50,000 images) at {recipe.test} px{trained}"


def timm_entry(arch: str, tag: str, top1: float, top5: float) -> PublishedWeights:
    """One of timm's files on the Hugging Face Hub as a catalogue entry.

    The preprocessing is timm's *test* size and crop, bicubic or bilinear as the cfg says
    (results-imagenet.csv was measured so). timm publishes no SHA-256 of the Hub's files
    outside its storage metadata, so ``sha256`` is empty (see :attr:`PublishedWeights.sha256`)
    and the file is never downloaded unchecked.
    """
    model, params = ARCHITECTURES[arch]
    recipe = recipe_of(arch, tag)
    name = f"{arch}.{tag}_in1k"
    pre = Preprocessing(
        recipe.test, recipe.resize, recipe.interpolation, IMAGENET_MEAN, IMAGENET_STD
    )
    return PublishedWeights(
        name=name,
        model=model,
        layout="timm",
        url=f"https://huggingface.co/timm/{name}/resolve/main/model.safetensors",
        sha256="",
        file_format="safetensors (state dict, timm's names = torchvision's)",
        preprocessing=pre,
        num_classes=1000,
        classes=(),
        classes_source=f"{IMAGENET1K_SOURCE}: timm's order, the sorted WordNet ids",
        num_params=params,
        top1=top1,
        top5=top5,
        metric_data=_metric_data(recipe),
        eval_data=None,  # resnetlab cannot name ImageNet's val set: any folder may be it
        licence=_licence(name, recipe),
        source=(
            f"huggingface.co/timm/{name}; {CFG_SOURCE} ({recipe.cfg}: test size, crop, "
            f"interpolation); {CSV_SOURCE} (top-1/top-5)"
        ),
    )


TIMM_WEIGHTS: tuple[PublishedWeights, ...] = tuple(timm_entry(*row) for row in _ROWS)
