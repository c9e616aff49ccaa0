"""The parameter counts behind ResNet's efficiency, counted by hand on small modules:
VGG's first layers (260,160 parameters) against ResNet's stem (9,472), and a plain block
(73,856) against a bottleneck (45,248) and a projecting bottleneck (57,728).

These are teaching modules, written as a by-hand count writes them, not the library's
blocks: every conv has a bias and there is no BN, which is why the counts differ from
:class:`~resnetlab.models.Bottleneck`.
"""

from __future__ import annotations

from torch import Tensor, nn


def vgg_first_layers() -> nn.Sequential:
    """VGG's first two stages: conv3-64 ×2, pool, conv3-128 ×2, pool (input 3×224×224)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=3, stride=1, padding="same"),
        nn.Conv2d(64, 64, kernel_size=3, stride=1, padding="same"),
        nn.MaxPool2d(kernel_size=2, stride=2),
        nn.Conv2d(64, 128, kernel_size=3, stride=1, padding="same"),
        nn.Conv2d(128, 128, kernel_size=3, stride=1, padding="same"),
        nn.MaxPool2d(kernel_size=2, stride=2),
    )


def resnet_first_layers() -> nn.Sequential:
    """ResNet's 7×7/2 stem conv (with a bias, as the hand count writes it) and a 2×2 pool."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3),
        nn.MaxPool2d(kernel_size=2, stride=2),
    )


class ConvBlock(nn.Module):
    """Plain block: two 3×3 convs, no shortcut (64 → 64)."""

    def __init__(self, in_channels: int = 64, out_channels: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding="same")
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding="same")

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv2(self.conv1(x))
        return out


class BottleneckBlock(nn.Module):
    """Bottleneck with an identity shortcut (solid line): 1×1, 3×3, 1×1 at 64 channels.

    The listing this follows returns ``x + y`` without defining ``y``; this is the evident
    intent.
    """

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding="same")
        self.conv3 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.conv3(self.conv2(self.conv1(x)))
        return x + y


class ProjectingBottleneckBlock(nn.Module):
    """Bottleneck with a projection shortcut (dashed line): 64 → 128 channels, stride 2."""

    def __init__(self, in_channels: int = 64, channels: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(channels, channels * 2, 1)
        self.conv_shortcut = nn.Conv2d(in_channels, channels * 2, 1, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv3(self.conv2(self.conv1(x)))
        out: Tensor = self.conv_shortcut(x) + y
        return out


FIRST_LAYERS_INPUT = (1, 3, 224, 224)
BLOCK_INPUT = (1, 64, 56, 56)


def first_layers() -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """Table 1 of the comparison: the networks' first layers (expected 260,160 vs 9,472)."""
    return [
        ("VGG first layers", vgg_first_layers(), FIRST_LAYERS_INPUT),
        ("ResNet first layers", resnet_first_layers(), FIRST_LAYERS_INPUT),
    ]


def blocks() -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """Table 2 of the comparison: plain vs bottleneck blocks (73,856 / 45,248 / 57,728)."""
    return [
        ("plain block (64→64)", ConvBlock(), BLOCK_INPUT),
        ("bottleneck, identity (64→64)", BottleneckBlock(), BLOCK_INPUT),
        ("bottleneck, projection (64→128, /2)", ProjectingBottleneckBlock(), BLOCK_INPUT),
    ]
