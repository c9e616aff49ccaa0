"""Backbone features as timm serves them: ``create_model(name, features_only=True,
out_indices=(1, 2, 3))`` returns a :class:`FeatureNet` whose forward gives the chosen
levels' feature maps (a list of tensors) and whose ``feature_info`` says their channels,
reductions and module names, so detection/segmentation necks written for timm take it.

Levels, as timm numbers them for its ResNets: 0 is the stem's activation (before the
max-pool), 1… the residual stages. ImageNet nets: reductions 2, 4, 8, 16, 32; CIFAR nets
(3×3/1 stem, no max-pool, three stages): 1, 1, 2, 4. A pre-activation net's last level is
taken after its closing BN-ReLU, as in :meth:`~resnetlab.models.resnet.ResNet.forward_stages`.
VGG: the last ReLU before each of its five max-pools, reductions 1, 2, 4, 8, 16 (timm adds
a sixth level from its convolutional classifier, which torchvision's VGG has not).

Keys are the full model's (``conv1.weight``, ``layer1.0…``), so a checkpoint of the whole
network loads with :meth:`FeatureNet.load_state_dict`: the head's keys, and those of stages
after the last chosen level (not built, as timm prunes them), are dropped; any other
missing or unexpected key still raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from torch import Tensor, nn

from resnetlab.errors import InvalidValueError
from resnetlab.models.resnet import ResNet
from resnetlab.models.vgg import VGG


@dataclass(frozen=True)
class FeatureLevel:
    """One feature level: the modules run (in order, from the previous level) to reach it,
    its channels, its reduction (input side / feature side) and the module it is the output of."""

    steps: tuple[str, ...]
    channels: int
    reduction: int
    module: str


class FeatureInfo:
    """timm's ``feature_info`` interface over the chosen levels (``out_indices``)."""

    def __init__(self, levels: Sequence[FeatureLevel], out_indices: tuple[int, ...]) -> None:
        self.levels = tuple(levels)
        self.out_indices = out_indices

    def _pick(self, key: str, idx: int | None) -> Any:
        values = [getattr(self.levels[i], key) for i in self.out_indices]
        return values if idx is None else values[idx]

    @overload
    def channels(self, idx: None = None) -> list[int]: ...
    @overload
    def channels(self, idx: int) -> int: ...
    def channels(self, idx: int | None = None) -> list[int] | int:
        """Channels of each chosen level (or of the ``idx``-th chosen one)."""
        out: list[int] | int = self._pick("channels", idx)
        return out

    @overload
    def reduction(self, idx: None = None) -> list[int]: ...
    @overload
    def reduction(self, idx: int) -> int: ...
    def reduction(self, idx: int | None = None) -> list[int] | int:
        """Input side over feature side of each chosen level."""
        out: list[int] | int = self._pick("reduction", idx)
        return out

    @overload
    def module_name(self, idx: None = None) -> list[str]: ...
    @overload
    def module_name(self, idx: int) -> str: ...
    def module_name(self, idx: int | None = None) -> list[str] | str:
        """The module (a path in the full model) whose output each chosen level is."""
        out: list[str] | str = self._pick("module", idx)
        return out

    def get_dicts(self) -> list[dict[str, Any]]:
        """timm's dict form: ``{"num_chs", "reduction", "module"}`` per chosen level."""
        return [
            {"num_chs": lv.channels, "reduction": lv.reduction, "module": lv.module}
            for lv in (self.levels[i] for i in self.out_indices)
        ]

    def __len__(self) -> int:
        return len(self.out_indices)


def resnet_levels(model: ResNet) -> list[FeatureLevel]:
    spec = model.spec
    stem = [n for n in ("conv1", "bn1", "relu") if getattr(model, n) is not None]
    reduction = model.conv1.stride[0]
    levels = [FeatureLevel(tuple(stem), model.conv1.out_channels, reduction, stem[-1])]
    for i, (name, planes) in enumerate(zip(model.stage_names, spec.widths, strict=True)):
        steps = [name]
        if i == 0 and model.maxpool is not None:
            steps.insert(0, "maxpool")
            reduction *= 2
        reduction *= 1 if i == 0 else 2
        if i == len(spec.widths) - 1 and model.final_norm is not None:
            steps += ["final_norm", "final_relu"]
        levels.append(
            FeatureLevel(tuple(steps), spec.scaled(planes) * spec.expansion, reduction, steps[-1])
        )
    return levels


def vgg_levels(model: VGG) -> list[FeatureLevel]:
    levels, start, reduction, channels = [], 0, 1, model.spec.in_channels
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.Conv2d):
            channels = layer.out_channels
        if isinstance(layer, nn.MaxPool2d):
            steps = tuple(f"features.{j}" for j in range(start, i))
            levels.append(FeatureLevel(steps, channels, reduction, steps[-1]))
            start, reduction = i, reduction * 2  # the pool opens the next level
    return levels


def feature_levels(model: nn.Module) -> list[FeatureLevel]:
    """Every feature level a model offers, in network order."""
    if isinstance(model, ResNet):
        return resnet_levels(model)
    if isinstance(model, VGG):
        return vgg_levels(model)
    raise TypeError(f"{type(model).__name__} has no feature levels (ResNet and VGG have)")


def check_out_indices(
    out_indices: Sequence[int], levels: Sequence[FeatureLevel], name: str
) -> tuple[int, ...]:
    """``out_indices`` as non-negative level numbers in network order (negative ones count
    from the end, as in Python); anything else is a one-line ``ValueError``."""
    n = len(levels)
    names = ", ".join(f"{i} {lv.module}" for i, lv in enumerate(levels))
    valid = isinstance(out_indices, Sequence) and not isinstance(out_indices, str)
    if (
        not valid
        or not out_indices
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in out_indices)
    ):
        raise InvalidValueError(
            f"out_indices must be a non-empty sequence of level numbers, "
            f"got {out_indices!r}; {name}'s levels: {names}"
        )
    bad = [i for i in out_indices if not -n <= i < n]
    if bad:
        raise InvalidValueError(
            f"out_indices {bad[0]} is out of range: {name} has {n} feature levels, {names}"
        )
    norm = sorted(i % n for i in out_indices)
    if len(set(norm)) != len(norm):
        raise InvalidValueError(f"out_indices {tuple(out_indices)} names a level twice")
    return tuple(norm)


class FeatureNet(nn.Module):
    """A model's backbone up to its last chosen level; ``forward(x)`` → a list of feature
    maps ``(N, C_i, H / r_i, W / r_i)`` with ``C_i``, ``r_i`` from ``feature_info``."""

    def __init__(
        self, model: nn.Module, out_indices: Sequence[int] | None = None, *, name: str = ""
    ) -> None:
        super().__init__()
        levels = feature_levels(model)
        indices = tuple(range(len(levels))) if out_indices is None else out_indices
        chosen = check_out_indices(indices, levels, name or type(model).__name__)
        self.feature_info = FeatureInfo(levels, chosen)
        self.levels = levels[: chosen[-1] + 1]
        self._keep(model, [s for lv in self.levels for s in lv.steps])
        # Keys of the full model this net does not hold: dropped when loading its weights.
        self.dropped_keys = frozenset(model.state_dict()) - frozenset(self.state_dict())

    def _keep(self, model: nn.Module, steps: list[str]) -> None:
        """Register the modules the steps use under their own names (so keys match the full
        model); a ``features.N`` step keeps VGG's ``features`` up to N."""
        last: dict[str, int] = {}
        for step in steps:
            top, _, child = step.partition(".")
            last[top] = max(last.get(top, -1), int(child) if child else -1)
        for top, end in last.items():
            module = getattr(model, top)
            if end >= 0:
                module = nn.Sequential(*list(module)[: end + 1])
            self.add_module(top, module)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, level in enumerate(self.levels):
            for step in level.steps:
                x = self.get_submodule(step)(x)
            if i in self.feature_info.out_indices:
                out.append(x)
        return out

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load this net's tensors from a checkpoint of the whole model: the keys of the
        parts it does not hold (the head, later stages) are dropped first, so ``strict``
        still catches a checkpoint of another architecture."""
        own = {k: v for k, v in state_dict.items() if k not in self.dropped_keys}
        return super().load_state_dict(own, strict=strict, assign=assign)
