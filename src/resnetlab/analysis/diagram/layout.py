"""What a diagram shows, read from the model itself: the paper's Fig. 3 column of a network.

A column is a list of *bands*, one per output size (224×224, 112×112, …, 1×1), as Fig. 3
labels them on its left. A band holds single layers (the stem conv, a pool, a classifier
layer) and residual units. A unit lists its main-path convolutions and its shortcut:
``identity`` (solid arc), ``projection`` (a 1×1 conv, dotted arc), ``zero-pad`` (option A,
dotted arc), or ``None`` (a plain net's block: no arc). BN and ReLU are not drawn, as in the
paper. Every number comes from one traced forward pass on the meta device, so output sizes
are exactly :func:`~resnetlab.analysis.summary.summarize`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from resnetlab.analysis.counting import LayerCall, trace_calls
from resnetlab.errors import InvalidValueError
from resnetlab.models.blocks import ResidualUnit, ZeroPadShortcut
from resnetlab.models.resnet import ResNet
from resnetlab.models.vgg import VGG

# A column with more conv boxes than this folds the repeated blocks of a stage into one
# "×n" box (ResNet-101 has 100, ResNet-1202 1,201): one page stays readable.
FOLD_ABOVE = 60
_POOLS = ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d")


@dataclass(frozen=True)
class Layer:
    """One drawn box: a convolution, a pooling or a classifier layer."""

    label: str  # "3×3 conv, 128, /2", "pool, /2", "avg pool", "fc 1000"
    kind: str  # "conv" | "pool" | "fc"
    name: str  # the module's dotted path
    params: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class Unit:
    """A residual unit (or a plain net's block); ``repeat`` > 1 once identical ones fold."""

    names: tuple[str, ...]  # the dotted path of every block it stands for
    layers: tuple[Layer, ...]  # main-path convolutions of one block
    shortcut: str | None  # "identity" | "projection" | "zero-pad" | None (no shortcut)
    output_shape: tuple[int, ...]
    params: int  # of one block

    @property
    def repeat(self) -> int:
        return len(self.names)

    def signature(self) -> tuple[object, ...]:
        return (tuple(x.label for x in self.layers), self.shortcut, self.params)


Entry = Layer | Unit


@dataclass(frozen=True)
class Band:
    """Everything whose output has one spatial size."""

    size: tuple[int, int]  # (H, W); (1, 1) for pooled vectors and logits
    entries: tuple[Entry, ...]

    @property
    def label(self) -> str:
        return f"{self.size[0]}×{self.size[1]}"


@dataclass(frozen=True)
class Column:
    title: str
    input_size: tuple[int, ...]
    bands: tuple[Band, ...]
    folded: str | None = None  # how it was folded, in words; None if drawn unfolded

    def entries(self) -> list[Entry]:
        return [e for b in self.bands for e in b.entries]

    def units(self) -> list[Unit]:
        return [e for e in self.entries() if isinstance(e, Unit)]

    def conv_count(self) -> int:
        """Convolution layers drawn, counting a folded box ×n (shortcut convs not drawn)."""
        n = 0
        for e in self.entries():
            if isinstance(e, Unit):
                n += e.repeat * sum(1 for x in e.layers if x.kind == "conv")
            elif e.kind == "conv":
                n += 1
        return n


def conv_label(m: nn.Conv2d) -> str:
    k_h, k_w = m.kernel_size
    text = f"{k_h}×{k_w} conv, {m.out_channels}"
    if m.stride[0] > 1:
        text += f", /{m.stride[0]}"
    if m.groups > 1:
        text += f", {m.groups} groups"
    return text


def _layer(call: LayerCall, module: nn.Module) -> Layer | None:
    shape = call.output_shape or ()
    if isinstance(module, nn.Conv2d):
        return Layer(conv_label(module), "conv", call.name, call.params, shape)
    if isinstance(module, nn.Linear):
        return Layer(f"fc {module.out_features}", "fc", call.name, call.params, shape)
    if call.type in _POOLS:
        stride = getattr(module, "stride", None)
        stride = stride[0] if isinstance(stride, tuple) else stride
        if call.type == "MaxPool2d":
            label = f"pool, /{stride}" if stride and stride > 1 else "pool"
        else:
            label = "avg pool"
        return Layer(label, "pool", call.name, 0, shape)
    return None


def _spatial(shape: tuple[int, ...]) -> tuple[int, int]:
    return (shape[2], shape[3]) if len(shape) == 4 else (1, 1)


def _shortcut(block: nn.Module) -> str | None:
    if not isinstance(block, ResidualUnit) or not block.residual:
        return None
    if block.downsample is None:
        return "identity"
    if isinstance(block.downsample, ZeroPadShortcut):
        return "zero-pad"
    return "projection"


def _block_of(name: str, blocks: set[str]) -> str | None:
    """The block (``layer2.0``) a layer's dotted path lies in, if any (blocks are depth 2)."""
    head = ".".join(name.split(".")[:2])
    return head if head in blocks and name != head else None


def _entries(model: nn.Module, calls: list[LayerCall], blocks: set[str]) -> list[Entry]:
    modules = dict(model.named_modules())
    # One pass: each block's main-path layers (its shortcut is drawn as the arc instead).
    inner: dict[str, list[Layer]] = {b: [] for b in blocks}
    for c in calls:
        block = _block_of(c.name, blocks)
        if block and c.is_leaf and "downsample" not in c.name.split(".")[2:]:
            layer = _layer(c, modules[c.name])
            if layer is not None and layer.kind == "conv":
                inner[block].append(layer)
    out: list[Entry] = []
    last_size: tuple[int, int] | None = None
    for call in calls:
        if call.name in blocks:
            shape = call.output_shape or ()
            shortcut = _shortcut(modules[call.name])
            out.append(Unit((call.name,), tuple(inner[call.name]), shortcut, shape, call.params))
            last_size = _spatial(shape)
            continue
        if not call.is_leaf or _block_of(call.name, blocks):
            continue
        layer = _layer(call, modules[call.name])
        if layer is None:
            continue
        size = _spatial(layer.output_shape)
        # VGG's adaptive 7×7 pool is a no-op at 224×224: the paper does not draw it.
        if call.type == "AdaptiveAvgPool2d" and size == last_size and size != (1, 1):
            continue
        out.append(layer)
        last_size = size
    return out


def _bands(entries: list[Entry]) -> list[Band]:
    bands: list[Band] = []
    for e in entries:
        size = _spatial(e.output_shape)
        if bands and bands[-1].size == size:
            bands[-1] = Band(size, (*bands[-1].entries, e))
        else:
            bands.append(Band(size, (e,)))
    return bands


def fold_band(band: Band) -> Band:
    """Consecutive identical units (same convs, shortcut and parameters) become one."""
    out: list[Entry] = []
    for e in band.entries:
        prev = out[-1] if out else None
        if isinstance(e, Unit) and isinstance(prev, Unit) and prev.signature() == e.signature():
            out[-1] = replace(prev, names=prev.names + e.names)
        else:
            out.append(e)
    return Band(band.size, tuple(out))


def check_drawable(model: nn.Module) -> None:
    """A ``ValueError`` unless ``model`` is a resnetlab ``ResNet`` or ``VGG``."""
    if not isinstance(model, ResNet | VGG):
        raise InvalidValueError(
            f"cannot draw a {type(model).__name__}: a diagram needs a resnetlab ResNet or VGG "
            "(a model built from a spec, with stages); use summarize() for any module"
        )


def column(
    model: nn.Module,
    input_size: tuple[int, ...],
    *,
    title: str,
    fold: bool | None = None,
) -> Column:
    """The Fig. 3 column of a resnetlab ``ResNet`` or ``VGG`` for ``input_size``.

    ``fold``: ``True`` folds repeated blocks into "×n" boxes, ``False`` never, ``None``
    (default) folds when the column would have more than :data:`FOLD_ABOVE` conv boxes.
    Raises a ``ValueError`` for any other module: a diagram needs the stages of a spec.
    """
    check_drawable(model)
    blocks: set[str] = set()
    if isinstance(model, ResNet):
        blocks = {f"{s}.{i}" for s in model.stage_names for i in range(len(getattr(model, s)))}
    calls = trace_calls(model, input_size)
    col = Column(title, tuple(input_size), tuple(_bands(_entries(model, calls, blocks))))
    unfolded = col.conv_count()
    if fold is None:
        fold = unfolded > FOLD_ABOVE
    if not fold:
        return col
    folded = replace(col, bands=tuple(fold_band(b) for b in col.bands))
    n_units, n_boxes = len(col.units()), len(folded.units())
    if n_boxes == n_units:
        return col
    note = (
        f"{title}: {n_units:,} blocks drawn as {n_boxes} boxes (identical blocks of a stage "
        f"folded into one, marked ×n); unfolded it has {unfolded:,} conv boxes"
    )
    return replace(folded, folded=note)
