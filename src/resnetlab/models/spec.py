"""Architecture specs: every named model is one of these frozen dataclasses.

A spec says *what* a network is; :mod:`resnetlab.models.resnet` and
:mod:`resnetlab.models.vgg` say *how* to build it. Overriding a field
(``create_model("resnet50", num_classes=10)``) is ``dataclasses.replace`` on the spec,
so every variant is data and validation happens in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from resnetlab.errors import InvalidValueError

BlockKind = Literal["basic", "bottleneck"]
"""``basic``: two k×k convs (ResNet-18/34, CIFAR nets). ``bottleneck``: 1×1 → k×k → 1×1."""

Shortcut = Literal["A", "B", "C"]
"""He et al. 2015 §3.3 / Table 3. A: zero-padding identity (no parameters); B: 1×1
projection only where the shape changes; C: projection on every block."""

Placement = Literal["v1", "v1.5"]
"""Where a downsampling bottleneck puts its stride. ``v1``: on the first 1×1 conv, as the
paper (and its Caffe models) do. ``v1.5``: on the 3×3 conv, as torchvision and timm do;
slightly more accurate and ~6% more multiply-adds for ResNet-50."""

Stem = Literal["imagenet", "cifar"]
"""``imagenet``: 7×7/2 conv → BN → ReLU → 3×3/2 max-pool. ``cifar``: 3×3/1 conv → BN → ReLU."""

Pool = Literal["avg", "max"]
"""The global pooling before the head (timm's ``global_pool``): average (the paper's) or max."""

Head = Literal["linear", "mlp"]
"""``linear``: GAP → [Dropout] → Linear(n). ``mlp`` (the fine-tuning head of a Keras tutorial):
GAP → Dropout → Linear(hidden) → ReLU → Dropout → Linear(n)."""

BLOCK_EXPANSION: dict[str, int] = {"basic": 1, "bottleneck": 4}
CONVS_PER_BLOCK: dict[str, int] = {"basic": 2, "bottleneck": 3}


# Bounds that keep a typo from hanging the process: building (even on the meta device) is
# linear in the blocks, and a channel count sizes every weight. ResNet-1202 has 600 blocks,
# the widest registered stage 2,048 channels (×4 for a wide bottleneck).
MAX_BLOCKS = 2_000
MAX_CHANNELS = 65_536
# A k×k kernel costs k² per weight (a 5,341-wide one took 15 s to count); the paper uses 3,
# seed 004 allows 5, and 31 already covers a whole 32×32 image.
MAX_KERNEL = 31
MAX_CLASSES = 1_000_000  # ImageNet-21k has 21,841


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidValueError(f"{name} must be a positive integer, got {value!r}")


def _check_fraction(name: str, value: object) -> None:
    """A dropout probability: a number in [0, 1) (NaN fails the range check)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise InvalidValueError(f"{name} must be a number in [0, 1), got {value!r}")


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):  # 'no' is a true string: it built a residual net
        raise InvalidValueError(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ResNetSpec:
    """A residual (or plain) network, in the terms of He et al. 2015 and 2016.

    Channel widths are *planes*: a stage of ``bottleneck`` blocks with width 64 outputs
    64 × 4 = 256 channels. The first stage keeps the resolution; every later stage halves
    it with a stride-2 conv in its first block.
    """

    block: BlockKind
    layers: tuple[int, ...]  # blocks per stage
    widths: tuple[int, ...]  # planes per stage, before `width` scaling
    stem: Stem = "imagenet"
    stem_width: int = 64
    residual: bool = True  # False: the plain twin, same layers without shortcuts
    shortcut: Shortcut = "B"
    placement: Placement = "v1"
    preact: bool = False  # He et al. 2016 pre-activation units (BN → ReLU → conv)
    groups: int = 1  # ResNeXt cardinality (grouped k×k conv of the bottleneck)
    width_per_group: int = 64  # bottleneck inner width = planes × width_per_group/64 × groups
    kernel_size: int = 3  # the middle (k×k) kernel; the finetune recipe's model allows 3 or 5
    width: float = 1.0  # multiplier on every channel count (stem and stages)
    num_classes: int = 1000  # 0: no classifier, the model outputs pooled features (timm)
    in_channels: int = 3
    global_pool: Pool = "avg"
    zero_init_residual: bool = False  # last BN of each residual branch starts at γ = 0
    head: Head = "linear"
    head_hidden: int = 200  # hidden units of the mlp head (Keras: Dense(200, relu))
    dropout: float | None = None  # None: 0.5 for the mlp head, 0 for linear
    # Stochastic depth (Huang et al. 2016): the last residual branch is dropped with this
    # probability in training, block l of L with l/L of it (their linear decay rule). 0: off.
    drop_path: float = 0.0

    def __post_init__(self) -> None:
        # In this order: the first problem found is the one reported.
        self._check_stages()
        self._check_flags_and_counts()
        self._check_choices()
        self._check_sizes()
        self._check_regularisation()

    def _check_stages(self) -> None:
        """The block kind, and ``layers``/``widths``: equally long lists of positive integers,
        at most :data:`MAX_BLOCKS` blocks in all."""
        if self.block not in BLOCK_EXPANSION:
            raise InvalidValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
        for name in ("layers", "widths"):  # `--set widths=1e999` reached len() of a float
            if not isinstance(getattr(self, name), list | tuple):
                raise InvalidValueError(
                    f"{name} must be a list of positive integers, got {getattr(self, name)!r}"
                )
        if not self.layers or len(self.layers) != len(self.widths):
            raise InvalidValueError(
                f"layers {self.layers} and widths {self.widths} must be non-empty and equally long"
            )
        for n in self.layers:
            _check_positive("blocks per stage", n)
        if sum(self.layers) > MAX_BLOCKS:
            raise InvalidValueError(
                f"layers {list(self.layers)} make {sum(self.layers):,} blocks; at most "
                f"{MAX_BLOCKS:,} are built (ResNet-1202 has 600)"
            )
        for w in self.widths:
            _check_positive("stage width", w)

    def _check_flags_and_counts(self) -> None:
        """The true/false options, and the counts that must be positive integers."""
        for name in ("residual", "preact", "zero_init_residual"):
            _check_flag(name, getattr(self, name))
        for name in ("stem_width", "groups", "width_per_group", "in_channels"):
            _check_positive(name, getattr(self, name))
        n = self.num_classes  # 0 as in timm: no classifier, pooled features out
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidValueError(f"num_classes must be a positive integer (or 0), got {n!r}")
        _check_positive("head_hidden", self.head_hidden)

    def _check_choices(self) -> None:
        """The options that name one of a few variants."""
        if self.shortcut not in ("A", "B", "C"):
            raise InvalidValueError(f"shortcut must be 'A', 'B' or 'C', got {self.shortcut!r}")
        if self.placement not in ("v1", "v1.5"):
            raise InvalidValueError(
                f"placement must be 'v1' (paper) or 'v1.5', got {self.placement!r}"
            )
        if self.stem not in ("imagenet", "cifar"):
            raise InvalidValueError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
        if self.head not in ("linear", "mlp"):
            raise InvalidValueError(f"head must be 'linear' or 'mlp', got {self.head!r}")
        if self.head == "mlp" and self.num_classes == 0:
            raise InvalidValueError("num_classes=0 (pooled features) needs head 'linear'")
        if self.global_pool not in ("avg", "max"):
            raise InvalidValueError(f"global_pool must be 'avg' or 'max', got {self.global_pool!r}")

    def _check_sizes(self) -> None:
        """The kernel, the counts with an upper bound, the width multiplier, and the widest
        layer they make (at most :data:`MAX_CHANNELS`)."""
        k = self.kernel_size
        if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0:
            raise InvalidValueError(
                f"kernel_size must be a positive odd integer (3, 5, …), got {k!r}"
            )
        if k > MAX_KERNEL:
            raise InvalidValueError(f"kernel_size must be at most {MAX_KERNEL}, got {k:,}")
        for name, most in (
            ("in_channels", MAX_CHANNELS),
            ("num_classes", MAX_CLASSES),
            ("groups", MAX_CHANNELS),
            ("width_per_group", MAX_CHANNELS),
        ):
            if getattr(self, name) > most:
                raise InvalidValueError(
                    f"{name} must be at most {most:,}, got {getattr(self, name):,}"
                )
        m = self.width
        if isinstance(m, bool) or not isinstance(m, int | float) or not 0 < m < math.inf:
            raise InvalidValueError(f"width must be a positive finite number, got {m!r}")
        widest = self.scaled(max(self.widths)) * self.expansion * self.width_per_group // 64
        if max(widest, self.scaled(self.stem_width), self.head_hidden) > MAX_CHANNELS:
            raise InvalidValueError(
                f"this spec has layers of {max(widest, self.head_hidden):,} channels; at "
                f"most {MAX_CHANNELS:,} are built (check width, widths and head_hidden)"
            )

    def _check_regularisation(self) -> None:
        """Dropout and stochastic depth in range, and the options that need another one."""
        if self.dropout is not None:
            _check_fraction("dropout", self.dropout)
        _check_fraction("drop_path", self.drop_path)
        if self.drop_path > 0 and not self.residual:
            raise InvalidValueError("drop_path drops residual branches: a plain net has none")
        if self.groups > 1 and self.block != "bottleneck":
            raise InvalidValueError("groups > 1 (ResNeXt) needs bottleneck blocks")

    # Derived facts, used by the builder and by summaries.
    @property
    def expansion(self) -> int:
        return BLOCK_EXPANSION[self.block]

    @property
    def head_dropout(self) -> float:
        if self.dropout is not None:
            return self.dropout
        return 0.5 if self.head == "mlp" else 0.0

    @property
    def depth(self) -> int:
        """Weighted layers on the main path, counted as the paper does: stem conv + block
        convs + classifier layers (projection shortcuts are not counted)."""
        head_layers = 2 if self.head == "mlp" else 1 if self.num_classes else 0
        return 1 + CONVS_PER_BLOCK[self.block] * sum(self.layers) + head_layers

    def scaled(self, channels: int) -> int:
        """Apply the ``width`` multiplier to a channel count (at least one channel)."""
        return max(1, round(channels * self.width))

    @property
    def placement_note(self) -> str:
        """Which stride placement the model uses, in words (every summary prints it)."""
        if self.block == "basic":
            return "stride on the first 3×3 conv of a downsampling block (basic blocks)"
        if self.placement == "v1":
            return "v1 (paper): stride on the first 1×1 conv of a downsampling bottleneck"
        return "v1.5 (torchvision): stride on the 3×3 conv of a downsampling bottleneck"

    @property
    def shortcut_note(self) -> str:
        if not self.residual:
            return "none (plain network)"
        return {
            "A": "A: identity, zero-padded channels where the shape changes (no parameters)",
            "B": "B: identity, 1×1 projection where the shape changes",
            "C": "C: 1×1 projection on every block",
        }[self.shortcut]


VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    # Simonyan & Zisserman 2015, Table 1, configurations A, B, D, E ("M" = 2×2 max-pool).
    # (fmt: skip below: one row per configuration, as the paper's table has them.)
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class VGGSpec:
    """VGG-11/13/16/19 (Simonyan & Zisserman 2015), torchvision's layout and keys."""

    depth: int
    batch_norm: bool = False
    num_classes: int = 1000
    in_channels: int = 3
    dropout: float = 0.5  # in the two 4096-unit classifier layers

    def __post_init__(self) -> None:
        if self.depth not in VGG_CONFIGS:
            raise InvalidValueError(
                f"VGG depth must be one of {sorted(VGG_CONFIGS)}, got {self.depth!r}"
            )
        n = self.num_classes  # 0 as in timm: no last linear layer
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidValueError(f"num_classes must be a positive integer (or 0), got {n!r}")
        _check_positive("in_channels", self.in_channels)
        _check_fraction("dropout", self.dropout)

    @property
    def config(self) -> tuple[int | str, ...]:
        return VGG_CONFIGS[self.depth]
