"""Where a run is, as a checkpoint keeps it: epoch, step, the early-stopping bookkeeping,
the running sums and augmentation stream of an epoch paused midway, the random streams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from resnetlab.runtime.group import Group
from resnetlab.train.loop import EpochState


def rng_state() -> dict[str, Any]:
    """The global random streams (CPU, and every CUDA device's)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def best_value(metrics: dict[str, float], key: str) -> float:
    """The early-stopping value of ``key`` (higher is better: a loss is negated)."""
    return -metrics[key] if key == "val_loss" else metrics[key]


def early_stopping(
    best: float, bad_epochs: int, value: float, patience: int | None
) -> tuple[float, int, bool]:
    """The early-stopping decision after an epoch whose watched value is ``value`` (higher
    is better): the best value so far, the epochs without a better one, and whether the run
    stops (``patience`` such epochs in a row; ``None``: never)."""
    best, bad_epochs = (value, 0) if value > best else (best, bad_epochs + 1)
    return best, bad_epochs, patience is not None and bad_epochs >= patience


@dataclass
class Position:
    """Where a run is: what a checkpoint must hold to continue exactly."""

    epoch: int = 0
    step: int = 0
    best: float = float("-inf")  # best early-stopping value so far (higher is better)
    bad_epochs: int = 0
    best_top1: float = 0.0
    partial: EpochState | None = None  # the interrupted epoch's running sums
    generator: torch.Tensor | None = None  # its augmentation generator state


def saved_partial(
    part: EpochState, group: Group, device: torch.device, generator: torch.Tensor
) -> dict[str, Any]:
    """A paused epoch as a checkpoint stores it: the sums over every rank (every rank calls
    this; it is a collective), and the augmentation generator's state."""
    loss_sum, correct, seen = group.sum([part.loss_sum, part.correct, part.seen], device=device)
    return {
        "loss_sum": torch.tensor(loss_sum, dtype=torch.float64),
        "correct": torch.tensor(int(correct)),
        "seen": int(seen),
        "batches_done": part.batches_done,
        "seconds": part.seconds,
        "generator": generator,
    }


def restore_partial(p: dict[str, Any], device: torch.device, *, keep_sums: bool) -> EpochState:
    """The running sums of a paused epoch, on ``device``; zeroed unless ``keep_sums`` (the
    saved sums are global, so one rank alone carries them on)."""
    state = EpochState(
        p["loss_sum"].to(device),
        p["correct"].to(device),
        int(p["seen"]),
        int(p["batches_done"]),
        float(p["seconds"]),
    )
    if not keep_sums:
        state.loss_sum.zero_()
        state.correct.zero_()
        state.seen = 0
    return state
