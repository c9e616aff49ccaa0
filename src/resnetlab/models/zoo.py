"""Every named model, as data. Importing :mod:`resnetlab.models` registers them.

Defaults, and why:
- ``resnet50/101/152`` use the paper's stride placement (``v1``: stride on the first 1×1 of
  a downsampling bottleneck), because resnetlab builds the paper's networks exactly;
  ``resnet50_v1_5`` etc. are torchvision's placement, whose checkpoints they load.
- ImageNet ResNets use option B shortcuts (the paper's Table 3 default for its results).
- CIFAR ResNets (§4.2) use option A (zero-padding), as the paper does for CIFAR-10, so their
  parameter counts are the paper's (0.27M for ResNet-20 … 19.4M for ResNet-1202).
- Pre-activation nets (He et al. 2016) use projection (B) shortcuts, without BN.
- Wide and ResNeXt nets follow their own papers and torchvision: ``v1.5`` placement.
"""

from __future__ import annotations

from resnetlab.models.registry import register_model
from resnetlab.models.spec import ResNetSpec, VGGSpec

IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)

# He et al. 2015, Table 1: blocks per stage.
IMAGENET_LAYERS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
# He et al. 2015 §4.2: 6n+2 layers, n blocks of two 3×3 convs per stage.
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
PLAIN_CIFAR_DEPTHS = (20, 32, 44, 56, 110)
# He et al. 2016 §4 / Table 2: pre-activation bottleneck nets on CIFAR, 9n+2 layers.
PREACT_CIFAR_BOTTLENECK_DEPTHS = (164, 1001)
PREACT_CIFAR_BASIC_DEPTHS = (20, 32, 44, 56, 110)

PAPER = "He et al. 2015"
PREACT = "He et al. 2016 (pre-activation)"


def _imagenet(depth: int, **kw: object) -> ResNetSpec:
    block, layers = IMAGENET_LAYERS[depth]
    return ResNetSpec(block=block, layers=layers, widths=IMAGENET_WIDTHS, **kw)  # type: ignore[arg-type]


def _cifar(n: int, **kw: object) -> ResNetSpec:
    return ResNetSpec(
        block="basic",
        layers=(n, n, n),
        widths=CIFAR_WIDTHS,
        stem="cifar",
        stem_width=16,
        num_classes=10,
        **kw,  # type: ignore[arg-type]
    )


def _register_paper_imagenet() -> None:
    """He et al. 2015 on ImageNet: ResNet-18 … 152 (and torchvision's v1.5), plain-18/34."""
    for depth in IMAGENET_LAYERS:
        register_model(
            f"resnet{depth}",
            _imagenet(depth),
            family="imagenet",
            description=f"ResNet-{depth}, {PAPER} Table 1, paper stride placement (v1)",
        )
    for depth in (50, 101, 152):
        register_model(
            f"resnet{depth}_v1_5",
            _imagenet(depth, placement="v1.5"),
            family="imagenet",
            description=f"ResNet-{depth} v1.5 (torchvision: stride on the 3×3); loads its weights",
        )
    for depth in (18, 34):
        register_model(
            f"plain{depth}",
            _imagenet(depth, residual=False),
            family="plain",
            description=f"plain-{depth}: ResNet-{depth} without shortcuts, {PAPER} Fig. 3",
        )


def _register_paper_cifar() -> None:
    """He et al. 2015 §4.2 on CIFAR-10: ResNet-20 … 1202 (option A) and their plain nets."""
    for depth in CIFAR_DEPTHS:
        register_model(
            f"resnet{depth}",
            _cifar((depth - 2) // 6, shortcut="A"),
            family="cifar",
            description=f"ResNet-{depth} for CIFAR (6n+2, option A), {PAPER} §4.2",
        )
    for depth in PLAIN_CIFAR_DEPTHS:
        register_model(
            f"plain{depth}",
            _cifar((depth - 2) // 6, residual=False),
            family="plain",
            description=f"plain-{depth} for CIFAR: ResNet-{depth} minus shortcuts, {PAPER} Fig. 6",
        )


def _register_preact() -> None:
    """He et al. 2016: pre-activation nets, ImageNet-style and CIFAR (basic and bottleneck)."""
    for depth in IMAGENET_LAYERS:
        register_model(
            f"preact_resnet{depth}",
            _imagenet(depth, preact=True),
            family="preact",
            description=f"pre-activation ResNet-{depth}, {PREACT}",
        )
    for depth in PREACT_CIFAR_BASIC_DEPTHS:
        register_model(
            f"preact_resnet{depth}",
            _cifar((depth - 2) // 6, preact=True),
            family="preact",
            description=f"pre-activation ResNet-{depth} for CIFAR, {PREACT}",
        )
    for depth in PREACT_CIFAR_BOTTLENECK_DEPTHS:
        n = (depth - 2) // 9
        spec = ResNetSpec(
            block="bottleneck",
            layers=(n, n, n),
            widths=CIFAR_WIDTHS,
            stem="cifar",
            stem_width=16,
            preact=True,
            num_classes=10,
        )
        register_model(
            f"preact_resnet{depth}",
            spec,
            family="preact",
            description=f"pre-activation bottleneck ResNet-{depth} for CIFAR (9n+2), {PREACT}",
        )


def _register_wide() -> None:
    """Wide ResNets: torchvision's ImageNet ones and WRN-28-10 for CIFAR."""
    for depth in (50, 101):
        register_model(
            f"wide_resnet{depth}_2",
            _imagenet(depth, placement="v1.5", width_per_group=128),
            family="wide",
            description=f"Wide ResNet-{depth}-2: bottleneck inner width ×2 (torchvision)",
        )
    register_model(
        "wide_resnet28_10",
        ResNetSpec(
            block="basic",
            layers=(4, 4, 4),
            widths=(160, 320, 640),
            stem="cifar",
            stem_width=16,
            preact=True,
            num_classes=10,
        ),
        family="wide",
        description="WRN-28-10 for CIFAR, Zagoruyko & Komodakis 2016 (without dropout)",
    )


def _register_resnext() -> None:
    """ResNeXt (Xie et al. 2017), as torchvision builds them."""
    for depth, groups, wpg in ((50, 32, 4), (101, 32, 8), (101, 64, 4)):
        register_model(
            f"resnext{depth}_{groups}x{wpg}d",
            _imagenet(depth, placement="v1.5", groups=groups, width_per_group=wpg),
            family="resnext",
            description=f"ResNeXt-{depth} ({groups}×{wpg}d), Xie et al. 2017 (torchvision)",
        )


def _register_vgg() -> None:
    """VGG A, B, D, E (Simonyan & Zisserman 2015), with and without BN."""
    for depth in (11, 13, 16, 19):
        for bn in (False, True):
            register_model(
                f"vgg{depth}{'_bn' if bn else ''}",
                VGGSpec(depth=depth, batch_norm=bn),
                family="vgg",
                description=f"VGG-{depth}{' with BN' if bn else ''}, Simonyan & Zisserman 2015",
            )


def _register_all() -> None:
    """Every family, in the order ``list_models`` gives them."""
    _register_paper_imagenet()
    _register_paper_cifar()
    _register_preact()
    _register_wide()
    _register_resnext()
    _register_vgg()


_register_all()
