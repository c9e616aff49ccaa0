"""Residual units and shortcuts (He et al. 2015 §3; pre-activation: He et al. 2016).

Attribute names follow torchvision (``conv1``, ``bn1``, …, ``downsample``) so state dicts
load key-for-key. Every ReLU is its own module so a summary shows one row per call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnetlab.errors import InvalidValueError
from resnetlab.models.spec import BLOCK_EXPANSION, Placement, Shortcut


def conv(
    in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, groups: int = 1
) -> nn.Conv2d:
    """A bias-free k×k conv with "same" padding (BN follows, so a bias would be redundant)."""
    return nn.Conv2d(
        in_ch,
        out_ch,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        groups=groups,
        bias=False,
    )


class ZeroPadShortcut(nn.Module):
    """Option A (He et al. 2015 §3.3): identity with the extra channels zero-padded.

    Subsamples by ``stride`` (taking every ``stride``-th pixel, as the paper's CIFAR nets do)
    and appends ``out_channels - in_channels`` zero channels. It has no parameters; it is a
    plain module (no lambda), so it pickles, scripts and exports to ONNX.

    Shape: ``(N, C_in, H, W) → (N, C_out, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise InvalidValueError(
                f"option A cannot reduce channels ({in_channels} → {out_channels}); use B or C"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        if extra > 0:
            # F.pad pads from the last dim backwards: (W_l, W_r, H_t, H_b, C_front, C_back).
            x = F.pad(x, [0, 0, 0, 0, 0, extra])
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, each sample's residual branch is
    dropped (zeroed, leaving the identity) with probability ``p`` and the kept ones are
    scaled by ``1/(1-p)``, so the expected output is unchanged and evaluation is the
    identity (the paper scales at test time instead; the two are the same in expectation).
    No parameters or buffers: a state dict does not change. Draws from torch's global
    generator, as dropout does (checkpoints save its state, so resuming stays exact)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise InvalidValueError(f"drop_path must be in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


def make_shortcut(
    option: Shortcut, in_ch: int, out_ch: int, stride: int, *, norm: bool
) -> nn.Module | None:
    """The shortcut of one block, or ``None`` for a pure identity.

    ``norm=False`` gives a bare 1×1 conv for pre-activation units, whose input is already
    normalised (He et al. 2016).
    """
    changes_shape = stride != 1 or in_ch != out_ch
    if option == "A":
        return ZeroPadShortcut(in_ch, out_ch, stride) if changes_shape else None
    if option == "B" and not changes_shape:
        return None
    projection = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
    if not norm:
        return nn.Sequential(projection)
    return nn.Sequential(projection, nn.BatchNorm2d(out_ch))


class ResidualUnit(nn.Module):
    """What every unit shares: an optional shortcut, added to the residual branch.

    ``residual=False`` gives the plain twin (no shortcut, no addition). The shortcut is
    registered by :meth:`_add_shortcut` after the branch's layers, so state-dict keys come in
    torchvision's order (``conv1`` … ``bn3``, then ``downsample``).
    """

    residual: bool
    downsample: nn.Module | None
    drop_path: DropPath | None  # set by the network (ResNetSpec.drop_path); None: never drops

    def _add_shortcut(
        self, option: Shortcut, in_ch: int, out_ch: int, stride: int, *, residual: bool, norm: bool
    ) -> None:
        self.residual = residual
        self.drop_path = None
        self.downsample = (
            make_shortcut(option, in_ch, out_ch, stride, norm=norm) if residual else None
        )

    def merge(self, branch: Tensor, x: Tensor, shortcut_input: Tensor) -> Tensor:
        """``branch + shortcut`` (an identity takes ``x``, a projection ``shortcut_input``)."""
        if not self.residual:
            return branch
        if self.drop_path is not None:
            branch = self.drop_path(branch)
        return branch + (x if self.downsample is None else self.downsample(shortcut_input))


def bottleneck_dims(
    planes: int, stride: int, placement: Placement, groups: int, width_per_group: int
) -> tuple[int, int, int, int]:
    """``(inner width, output channels, stride of the first 1×1, stride of the k×k)``, with
    torchvision's width formula ``planes × width_per_group/64 × groups``."""
    inner = int(planes * (width_per_group / 64.0)) * groups
    stride_1x1, stride_kxk = (stride, 1) if placement == "v1" else (1, stride)
    return inner, planes * BLOCK_EXPANSION["bottleneck"], stride_1x1, stride_kxk


class BasicBlock(ResidualUnit):
    """Two k×k convs: conv-BN-ReLU-conv-BN, (+ shortcut), ReLU. Paper Fig. 2 / Fig. 5 left.

    With ``residual=False`` it is the plain twin: the same layers, no addition.
    """

    def __init__(
        self,
        in_ch: int,
        planes: int,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        shortcut: Shortcut = "B",
        residual: bool = True,
    ) -> None:
        super().__init__()
        out_ch = planes
        self.conv1 = conv(in_ch, planes, kernel_size, stride=stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv(planes, out_ch, kernel_size)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self._add_shortcut(shortcut, in_ch, out_ch, stride, residual=residual, norm=True)
        self.relu2 = nn.ReLU(inplace=True)

    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.relu2(self.merge(out, x, x))
        return result


class Bottleneck(ResidualUnit):
    """1×1 (reduce) → k×k → 1×1 (expand ×4), BN after each, (+ shortcut), ReLU. Fig. 5 right.

    ``placement`` decides which conv carries the stride of a downsampling block:
    ``v1`` the first 1×1 (paper), ``v1.5`` the k×k (torchvision). ``groups`` and
    ``width_per_group`` give ResNeXt and wide variants with torchvision's width formula.
    """

    expansion = BLOCK_EXPANSION["bottleneck"]  # torchvision's attribute, for familiarity

    def __init__(
        self,
        in_ch: int,
        planes: int,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        shortcut: Shortcut = "B",
        residual: bool = True,
        placement: Placement = "v1",
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        inner, out_ch, stride_1x1, stride_kxk = bottleneck_dims(
            planes, stride, placement, groups, width_per_group
        )
        self.conv1 = conv(in_ch, inner, 1, stride=stride_1x1)
        self.bn1 = nn.BatchNorm2d(inner)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv(inner, inner, kernel_size, stride=stride_kxk, groups=groups)
        self.bn2 = nn.BatchNorm2d(inner)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv(inner, out_ch, 1)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self._add_shortcut(shortcut, in_ch, out_ch, stride, residual=residual, norm=True)
        self.relu3 = nn.ReLU(inplace=True)

    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: Tensor = self.relu3(self.merge(out, x, x))
        return result


class PreActBasicBlock(ResidualUnit):
    """Pre-activation unit (He et al. 2016, Fig. 1b): BN-ReLU-conv-BN-ReLU-conv, + shortcut.

    A shortcut that is not a pure identity takes the pre-activated input, as in the paper's
    reference code; a pure identity takes the raw input.
    """

    def __init__(
        self,
        in_ch: int,
        planes: int,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        shortcut: Shortcut = "B",
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = conv(in_ch, planes, kernel_size, stride=stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv(planes, planes, kernel_size)
        self._add_shortcut(shortcut, in_ch, planes, stride, residual=residual, norm=False)

    def last_conv(self) -> nn.Conv2d:
        return self.conv2

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu2(self.bn2(out)))
        return self.merge(out, x, pre)


class PreActBottleneck(ResidualUnit):
    """Pre-activation bottleneck (He et al. 2016): BN-ReLU-1×1, BN-ReLU-k×k, BN-ReLU-1×1."""

    expansion = BLOCK_EXPANSION["bottleneck"]  # torchvision's attribute, for familiarity

    def __init__(
        self,
        in_ch: int,
        planes: int,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        shortcut: Shortcut = "B",
        residual: bool = True,
        placement: Placement = "v1",
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        inner, out_ch, stride_1x1, stride_kxk = bottleneck_dims(
            planes, stride, placement, groups, width_per_group
        )
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = conv(in_ch, inner, 1, stride=stride_1x1)
        self.bn2 = nn.BatchNorm2d(inner)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv(inner, inner, kernel_size, stride=stride_kxk, groups=groups)
        self.bn3 = nn.BatchNorm2d(inner)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv3 = conv(inner, out_ch, 1)
        self._add_shortcut(shortcut, in_ch, out_ch, stride, residual=residual, norm=False)

    def last_conv(self) -> nn.Conv2d:
        return self.conv3

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu2(self.bn2(out)))
        out = self.conv3(self.relu3(self.bn3(out)))
        return self.merge(out, x, pre)


Block = BasicBlock | Bottleneck | PreActBasicBlock | PreActBottleneck
__all__ = [
    "BasicBlock",
    "Block",
    "Bottleneck",
    "DropPath",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResidualUnit",
    "ZeroPadShortcut",
    "bottleneck_dims",
    "conv",
    "make_shortcut",
]
