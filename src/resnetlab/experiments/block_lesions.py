"""Lesion studies (Veit et al., 2016, "Residual Networks Behave Like Ensembles of Relatively
Shallow Networks").

Deleting a residual block leaves its shortcut: the block computes ``relu(F(x) + x)`` and
its input ``x`` already came out of a ReLU, so without ``F`` the block is exactly the
identity (or, for a downsampling block, its shortcut: option A's subsample-and-zero-pad).
A plain net's block has no shortcut; "deleting" it puts the same identity (or zero-padding
shortcut) in its place, which is what Veit et al. do to VGG layers.

:func:`lesion_study` measures a model's accuracy whole, with each block deleted, with k
random blocks deleted and after random swaps of blocks within a stage.

The unravelled view: a ResNet of n blocks is a collection of 2^n paths, each taking the
residual branch of some blocks and the shortcut of the others; C(n, k) of them pass through
k residual branches.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import Tensor, nn

from resnetlab.errors import InvalidValueError
from resnetlab.models.blocks import ZeroPadShortcut
from resnetlab.models.resnet import ResNet
from resnetlab.runtime.evaluate import evaluate
from resnetlab.runtime.execution import Execution

log = logging.getLogger(__name__)


def shortcut_of(block: nn.Module) -> nn.Module:
    """What is left of ``block`` when its residual branch is deleted."""
    downsample = getattr(block, "downsample", None)
    if isinstance(downsample, nn.Module):
        return downsample
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    in_ch, out_ch = convs[0].in_channels, convs[-1].out_channels
    stride = max(int(c.stride[0]) for c in convs)
    if in_ch == out_ch and stride == 1:
        return nn.Identity()
    return ZeroPadShortcut(in_ch, out_ch, stride)


def is_downsampling(block: nn.Module) -> bool:
    return not isinstance(shortcut_of(block), nn.Identity)


def block_positions(model: ResNet) -> list[tuple[int, int]]:
    """(stage index, index within the stage) of every block, in forward order."""
    return [(s, i) for s, stage in enumerate(model.stages()) for i in range(len(stage))]


@contextmanager
def lesioned(
    model: ResNet,
    deleted: Collection[int] = (),
    order: list[int] | None = None,
) -> Iterator[ResNet]:
    """``model`` with the blocks in ``deleted`` (global indices) replaced by their shortcuts
    and, if ``order`` is given, its blocks run in that order (a permutation of the global
    indices that keeps each block in its stage); restored on exit."""
    stages = list(model.stages())
    original = [list(stage) for stage in stages]
    blocks = [b for stage in original for b in stage]
    positions = block_positions(model)
    order = order if order is not None else list(range(len(blocks)))
    if sorted(order) != list(range(len(blocks))):
        raise InvalidValueError("order must be a permutation of the block indices")
    for slot, source in enumerate(order):
        if positions[slot][0] != positions[source][0]:
            raise InvalidValueError("a re-ordered block must stay in its stage")
    try:
        for slot, source in enumerate(order):
            s, i = positions[slot]
            block = blocks[source]
            stages[s][i] = shortcut_of(block) if source in deleted else block
        yield model
    finally:
        for stage, modules in zip(stages, original, strict=True):
            for i, m in enumerate(modules):
                stage[i] = m


def random_deletions(pool: list[int], k: int, rng: random.Random) -> set[int]:
    """``k`` distinct blocks of ``pool``."""
    return set(rng.sample(pool, k))


def random_swaps(model: ResNet, swaps: int, rng: random.Random) -> list[int]:
    """An order of the blocks after ``swaps`` swaps of two random non-downsampling blocks of
    the same stage (Veit et al. Fig. 5b)."""
    positions = block_positions(model)
    blocks = [b for stage in model.stages() for b in stage]
    movable: dict[int, list[int]] = {}
    for g, (s, _) in enumerate(positions):
        if not is_downsampling(blocks[g]):
            movable.setdefault(s, []).append(g)
    stages = [s for s, members in movable.items() if len(members) >= 2]
    order = list(range(len(blocks)))
    for _ in range(swaps):
        a, b = rng.sample(movable[rng.choice(stages)], 2)
        ia, ib = order.index(a), order.index(b)
        order[ia], order[ib] = order[ib], order[ia]
    return order


def path_length_counts(n: int) -> list[int]:
    """How many of the 2^n paths of the unravelled view pass through k residual branches,
    for k = 0 … n: the binomial coefficients C(n, k)."""
    return [math.comb(n, k) for k in range(n + 1)]


def mean_path_length(n: int) -> float:
    """The mean number of residual branches a path passes through (n/2)."""
    total: int = sum(k * c for k, c in enumerate(path_length_counts(n)))
    return total / float(2**n)


# ---------------------------------------------------------------------- the study
def _accuracy(model: nn.Module, batches: list[tuple[Tensor, Tensor]], place: Execution) -> float:
    return evaluate(model, batches, place=place)["top1"]


@dataclass
class LesionResult:
    """Top-1 accuracies (%) of one model under a lesion study."""

    intact: float
    single: list[tuple[int, bool, float]]  # (block, downsampling, accuracy)
    deletions: dict[int, list[float]]  # k → accuracy per draw
    swaps: dict[int, list[float]]  # number of swaps → accuracy per draw
    seconds: float = 0.0  # how long the study of this model took


def lesion_study(
    model: ResNet,
    batches: list[tuple[Tensor, Tensor]],
    place: Execution,
    *,
    draws: int,
    seed: int,
    max_swaps: int,
) -> LesionResult:
    """Accuracy of ``model`` whole, with each block deleted alone, with k random
    non-downsampling blocks deleted (k = 1 … n, ``draws`` draws each), and after 1 …
    ``max_swaps`` random swaps of blocks within a stage."""
    rng = random.Random(seed)
    started = time.monotonic()
    blocks = [b for stage in model.stages() for b in stage]
    intact = _accuracy(model, batches, place)
    single = []
    for g, block in enumerate(blocks):
        with lesioned(model, {g}):
            single.append((g, is_downsampling(block), _accuracy(model, batches, place)))
    pool = [g for g, b in enumerate(blocks) if not is_downsampling(b)]
    deletions: dict[int, list[float]] = {}
    for k in range(1, len(pool) + 1):
        deletions[k] = []
        for _ in range(draws if k < len(pool) else 1):
            with lesioned(model, random_deletions(pool, k, rng)):
                deletions[k].append(_accuracy(model, batches, place))
        log.info(f"  {k} blocks deleted: {statistics.fmean(deletions[k]):.2f}%")
    swaps: dict[int, list[float]] = {}
    for s in range(1, max_swaps + 1):
        swaps[s] = []
        for _ in range(draws):
            with lesioned(model, order=random_swaps(model, s, rng)):
                swaps[s].append(_accuracy(model, batches, place))
    return LesionResult(intact, single, deletions, swaps, time.monotonic() - started)
