"""Which runs each experiment needs, in the order they are trained.

The order puts the most telling pairs first (depth 20 against 56), so that an experiment
cut short by its budget still has something to compare.
"""

from __future__ import annotations

from typing import Any

Job = tuple[str, int, dict[str, Any]]  # model name, seed, model options


def _by_importance(depths: list[int]) -> list[int]:
    """Shallowest, deepest, then the rest in order."""
    if len(depths) <= 2:
        return list(depths)
    ordered = sorted(depths)
    return [ordered[0], ordered[-1], *ordered[1:-1]]


def degradation_jobs(depths: list[int], seeds: list[int]) -> list[Job]:
    return [
        (f"{kind}{d}", seed, {})
        for seed in seeds
        for d in _by_importance(depths)
        for kind in ("plain", "resnet")
    ]


def cifar_table_jobs(depths: list[int], seeds: list[int]) -> list[Job]:
    return [(f"resnet{d}", seed, {}) for seed in seeds for d in _by_importance(depths)]


def responses_jobs(depths: list[int], seeds: list[int]) -> list[Job]:
    return degradation_jobs(depths, seeds[:1])


SHORTCUT_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "plain": ("plain", {}),
    "A": ("resnet", {}),  # the CIFAR ResNets use option A already
    "B": ("resnet", {"shortcut": "B"}),
    "C": ("resnet", {"shortcut": "C"}),
}


def shortcut_jobs(depth: int, seeds: list[int]) -> list[Job]:
    return [
        (f"{kind}{depth}", seed, options)
        for seed in seeds
        for kind, options in SHORTCUT_VARIANTS.values()
    ]
