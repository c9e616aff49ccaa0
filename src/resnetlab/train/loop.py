"""One epoch of training as a small function: forward, backward, step, accumulate.

Nothing here syncs with the device on every step: losses and correct counts accumulate as
tensors and are read at log points, every ``log_every`` steps (for the NaN guard, the paper's
warm-up rule and the caller's ``on_log``: progress bar, step log) and at the end.

Under data parallelism (a :class:`~resnetlab.runtime.group.Group` of several ranks) the log
points are where the ranks meet: one all-reduce sums the counts, ORs the NaN flags and merges
the stop requests, so every rank logs the global figures and stops at the same step.
Evaluation is :func:`resnetlab.runtime.evaluate.evaluate`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from resnetlab.runtime.execution import Execution, autocast, to_input
from resnetlab.runtime.group import Group
from resnetlab.runtime.metrics import topk_correct
from resnetlab.train.distributed import agreed_stop, stop_flags
from resnetlab.train.optim import LRSchedule


@dataclass
class EpochState:
    """Running sums of one training epoch (kept on the device; saved when interrupted).
    Under data parallelism each rank holds its own; the global figures are their sum."""

    loss_sum: Tensor
    correct: Tensor
    seen: int = 0
    batches_done: int = 0
    seconds: float = 0.0

    @classmethod
    def fresh(cls, device: torch.device) -> EpochState:
        return cls(
            torch.zeros((), device=device, dtype=torch.float64),
            torch.zeros((), device=device, dtype=torch.int64),
        )


@dataclass
class EpochOutcome:
    metrics: dict[str, float] = field(default_factory=dict)
    step: int = 0
    stopped: str = ""  # "", "signal", "time", "iterations", "nan"


@dataclass(frozen=True)
class TrainStep:
    """What one optimiser step uses: the network (DDP-wrapped or compiled, as it trains), its
    optimiser, schedule and loss, where it runs; ``scaler`` for fp16 autocast, ``ema`` a
    weight average updated after every step, ``group`` the ranks whose batches make one
    global batch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    loss_fn: nn.Module
    place: Execution
    scaler: torch.amp.GradScaler | None = None
    ema: AveragedModel | None = None
    group: Group = field(default_factory=Group)


@dataclass(frozen=True)
class EpochPlan:
    """How long an epoch runs and how often it reports: ``total_batches`` per epoch,
    ``max_steps`` for the whole run (``None``: no limit), a log point every ``log_every``
    batches and at the epoch's last."""

    total_batches: int
    max_steps: int | None
    log_every: int


@dataclass(frozen=True)
class LogPoint:
    """The global figures at a log point: the epoch's running mean loss and top-1 (%) so
    far, the learning rate, and the mean loss and error (0-1) of the steps since the previous
    log point (``None`` when no image was seen since: the paper's iteration curves)."""

    step: int
    batches_done: int
    loss: float
    top1: float
    lr: float
    window_loss: float | None
    window_error: float | None


def _train_mode(model: nn.Module) -> None:
    model.train()
    for m in model.modules():
        # A frozen BN layer (fine-tuning with a frozen backbone) keeps its running statistics
        # too, as Keras does for trainable=False: otherwise the new data would shift them.
        if (
            isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.affine
            and not any(p.requires_grad for p in m.parameters())
        ):
            m.eval()


def _step(t: TrainStep, x: Tensor, y: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """One optimiser step on the batch ``(x, y)``; returns its logits and loss."""
    t.schedule.step(step)
    with autocast(t.place):
        logits = t.model(to_input(x, t.place))
        loss = t.loss_fn(logits.float(), y)
    t.optimizer.zero_grad(set_to_none=True)
    if t.scaler is not None:
        t.scaler.scale(loss).backward()
        t.scaler.step(t.optimizer)
        t.scaler.update()
    else:
        loss.backward()
        t.optimizer.step()
    if t.ema is not None:
        t.ema.update_parameters(t.model)
    return logits, loss


class _Window:
    """The log points of one epoch: where the ranks sum their counts and agree to stop."""

    def __init__(self, t: TrainStep, state: EpochState, should_stop: Callable[[], str]) -> None:
        self.t, self.state, self.should_stop = t, state, should_stop
        # Global sums at the last log point.
        self.last = t.group.sum([state.loss_sum, state.correct, state.seen], device=t.place.device)

    def close(self, step: int, bad: Tensor) -> tuple[str, LogPoint | None]:
        """Sum over the ranks; returns "nan" (and no point), else the agreed stop reason
        ("" under a single process, which asks ``should_stop`` after every step) and the
        point to report."""
        t, s = self.t, self.state
        values: list[Tensor | float] = [s.loss_sum, s.correct, s.seen, bad]
        if t.group.size > 1:
            values += stop_flags(self.should_stop())
        loss_sum, correct, seen, nan, *flags = t.group.sum(values, device=t.place.device)
        if nan:  # one sync every log_every steps
            return "nan", None
        reason = agreed_stop(flags) if flags else ""
        error = 1.0 - correct / max(1, seen)
        t.schedule.observe_train_error(error)
        window_loss = window_error = None
        if seen > self.last[2]:
            n_window = seen - self.last[2]
            window_loss = (loss_sum - self.last[0]) / n_window
            window_error = 1.0 - (correct - self.last[1]) / n_window
        self.last = [loss_sum, correct, seen]
        point = LogPoint(
            step,
            s.batches_done,
            loss_sum / max(1, seen),
            100.0 * (1.0 - error),
            t.schedule.lr,
            window_loss,
            window_error,
        )
        return reason, point


def train_one_epoch(
    t: TrainStep,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    state: EpochState,
    step: int,
    plan: EpochPlan,
    should_stop: Callable[[], str],
    on_log: Callable[[LogPoint], None] | None = None,
) -> EpochOutcome:
    """Train over ``batches`` from optimiser step ``step``, adding to ``state``; stops early
    when ``should_stop()`` names a reason, when ``plan.max_steps`` is reached, or on a
    non-finite loss (the weights are then unusable; the caller keeps the last checkpoint).

    ``on_log`` receives a :class:`LogPoint` at every log point. With a group of several
    ranks, ``should_stop()`` is asked only at log points and the ranks act on the most
    urgent answer any of them gave (see module docstring); metrics are those of the global
    batch.

    A batch's targets are class indices ``(N,)`` or, from mixup/CutMix, class
    probabilities ``(N, classes)`` (``loss_fn`` takes either; training top-1 then counts
    the dominant class)."""
    _train_mode(t.model)
    start = time.perf_counter()
    bad = torch.zeros((), dtype=torch.bool, device=t.place.device)
    stopped = ""
    window = _Window(t, state, should_stop)
    for x, y in batches:
        logits, loss = _step(t, x, y, step)
        step += 1
        n = y.shape[0]
        state.loss_sum += loss.detach().double() * n
        hard = y if y.dim() == 1 else y.argmax(dim=1)
        state.correct += topk_correct(logits.detach(), hard, ks=(1,))[1]
        bad |= ~torch.isfinite(loss.detach())
        state.seen += n
        state.batches_done += 1
        reason = ""
        last = plan.max_steps is not None and step >= plan.max_steps  # the run's last step
        if (
            state.batches_done % plan.log_every == 0
            or state.batches_done == plan.total_batches
            or last
        ):
            reason, point = window.close(step, bad)
            if point is None:
                stopped = reason
                break
            if on_log is not None:
                on_log(point)
        if plan.max_steps is not None and step >= plan.max_steps:
            stopped = "iterations"
            break
        if t.group.size == 1:
            reason = should_stop()
        if reason:
            stopped = reason
            break
    return _outcome(t, state, bad, stopped, step, start)


def _outcome(
    t: TrainStep, state: EpochState, bad: Tensor, stopped: str, step: int, start: float
) -> EpochOutcome:
    loss_sum, correct, seen, nan = t.group.sum(
        [state.loss_sum, state.correct, state.seen, bad], device=t.place.device
    )
    if not stopped and nan:
        stopped = "nan"
    state.seconds += time.perf_counter() - start
    metrics = {
        "train_loss": loss_sum / max(1, seen),
        "train_top1": 100.0 * correct / max(1, seen),
        "lr": t.schedule.lr,
        "images_per_s": seen / max(state.seconds, 1e-9),  # of all ranks together
        "train_time_s": state.seconds,
    }
    return EpochOutcome(metrics, step, stopped)
