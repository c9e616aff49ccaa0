"""``run.budget_min`` (``train --minutes``): a schedule sized to end in so many wall minutes.

A warmup-linear or cosine schedule needs its length before it starts to decay, and how many
epochs fit in ten minutes depends on the machine and on what else runs on it. So a budgeted
run trains its warm-up with the recipe's epoch count standing in for the length (a warm-up's
learning rate does not depend on it), times the last warm-up epoch (training and validation;
the build of a compiled step falls in the first epoch, so with two warm-up epochs the second
is a clean measure), and then fixes the length to the epochs that fit in what is left,
keeping back the time of the final test evaluation and a slack of :data:`SLACK` of the time
left, for the epochs that run slower than the timed one. The budget is also the run's time limit:
a machine that slows down later stops the run, which is then tested from its best
checkpoint, rather than overrunning. The budget counts from the first training step (the
data are decoded before it) and covers the test evaluation.
"""

from __future__ import annotations

import math

from resnetlab.data.datasets import DataBundle
from resnetlab.runtime.config import ConfigError, TrainConfig

# The share of the time left that is not planned for: a 2-core machine shared with other
# tenants ran later epochs of a 10-minute ResNet-20 run up to 40% slower than the timed one
# (30 against 43-47 s), and a run whose schedule is cut before its learning rate has decayed
# loses far more (ResNet-20, 10 min: 77.9% cut at 12 of 16 epochs) than the epoch or two the
# slack gives away.
SLACK = 0.05


def check_budget(cfg: TrainConfig) -> None:
    """A budget sizes a schedule that decays to the run's end, after a warm-up to time."""
    if cfg.run.budget_min is None:
        return
    s = cfg.schedule
    if s.name not in ("warmup-linear", "cosine") or s.warmup_epochs < 1:
        raise ConfigError(
            "run.budget_min (--minutes) sizes a warmup-linear or cosine schedule from the "
            "time of its warm-up: it needs schedule.name warmup-linear (earlier: onecycle) "
            "or cosine and "
            f"schedule.warmup_epochs ≥ 1 (got {s.name}, {s.warmup_epochs:g}); the fast "
            "recipe has both"
        )
    if cfg.run.iterations is not None:
        raise ConfigError("give run.budget_min (--minutes) or run.iterations, not both")


def fixing_epoch(cfg: TrainConfig) -> int:
    """The epoch (1-based) whose time fixes the run's length: the last of the warm-up."""
    return max(1, math.ceil(cfg.schedule.warmup_epochs))


def epochs_that_fit(
    *, budget_s: float, elapsed_s: float, epoch_s: float, test_s: float, epochs_done: int
) -> int:
    """How many epochs the run has in all: those done, and as many more of ``epoch_s`` as
    fit before ``budget_s`` with ``test_s`` kept back for the test evaluation and
    :data:`SLACK` of the rest for slower epochs."""
    left = (budget_s - elapsed_s - test_s) * (1 - SLACK)
    return epochs_done + max(0, math.floor(left / max(epoch_s, 1e-9)))


def budget_epochs(
    cfg: TrainConfig,
    bundle: DataBundle,
    *,
    epochs_done: int,
    elapsed_s: float,
    epoch_s: float,
    val_s: float,
    steps_per_epoch: int,
) -> tuple[int, str]:
    """The run's length in epochs, fixed from the time of the epoch being closed
    (``epochs_done``-th; ``epoch_s``, validation included) and of its validation (``val_s``;
    the test evaluation is estimated from it by the splits' sizes), and the line that says
    so. A pure decision: the caller applies it."""
    assert cfg.run.budget_min is not None
    test_images = len(bundle.test) if bundle.test is not None and cfg.run.test else 0
    test_s = val_s * test_images / max(1, len(bundle.val))
    epochs = epochs_that_fit(
        budget_s=cfg.run.budget_min * 60,
        elapsed_s=elapsed_s,
        epoch_s=epoch_s,
        test_s=test_s,
        epochs_done=epochs_done,
    )

    said = (
        f"budget {cfg.run.budget_min:g} min: epoch {epochs_done} took {epoch_s:.1f} s "
        f"(validation {val_s:.1f} s), {elapsed_s / 60:.1f} min used; the schedule now ends "
        f"after epoch {epochs} ({epochs * steps_per_epoch:,} steps), keeping {test_s:.0f} s "
        "for the test" + ("; too short for more than the warm-up" if epochs == epochs_done else "")
    )
    return epochs, said
