"""The training loop as small functions: one epoch of training, one pass of evaluation.

Both return plain metric dicts. Nothing here syncs with the device on every step: losses
and correct counts accumulate as tensors and are read every ``log_every`` steps (for the
progress bar, the NaN guard and the paper's warm-up rule) and at the end.

Under data parallelism (a :class:`~resnetlab.train.distributed.Group` of several ranks) those
reads are where the ranks meet: one all-reduce sums the counts, ORs the NaN flags and merges
the stop requests, so every rank logs the global figures and stops at the same step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from resnetlab.runtime.counts import topk_correct
from resnetlab.runtime.execution import Execution, autocast, to_input
from resnetlab.runtime.group import Group
from resnetlab.train.distributed import agreed_stop, stop_flags
from resnetlab.train.optim import LRSchedule
from resnetlab.train.progress import ProgressBar


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


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    loss_fn: nn.Module,
    place: Execution,
    state: EpochState,
    step: int,
    total_batches: int,
    max_steps: int | None,
    should_stop: Callable[[], str],
    log_every: int,
    scaler: torch.amp.GradScaler | None = None,
    progress: ProgressBar | None = None,
    on_log: Callable[[int, float, float], None] | None = None,
    group: Group | None = None,
    ema: AveragedModel | None = None,
) -> EpochOutcome:
    """Train over ``batches`` from optimiser step ``step``; stops early when
    ``should_stop()`` names a reason, when ``max_steps`` is reached, or on a non-finite
    loss (the weights are then unusable; the caller keeps the last checkpoint).

    ``on_log(step, loss, error)`` receives the mean training loss and error of the steps since
    the previous log point (the paper's iteration curves).

    With a ``group`` of several ranks, ``should_stop()`` is asked only at log points and the
    ranks act on the most urgent answer any of them gave (see module docstring); metrics are
    those of the global batch.

    A batch's targets are class indices ``(N,)`` or, from mixup/CutMix, class
    probabilities ``(N, classes)`` (``loss_fn`` takes either; training top-1 then counts
    the dominant class). ``ema``, if given, is updated after every optimiser step."""
    group = group or Group()
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
    start = time.perf_counter()
    bad = torch.zeros((), dtype=torch.bool, device=place.device)
    stopped = ""
    # Global sums at the last log point.
    window = group.sum([state.loss_sum, state.correct, state.seen], device=place.device)
    for x, y in batches:
        schedule.step(step)
        with autocast(place):
            logits = model(to_input(x, place))
            loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        n = y.shape[0]
        state.loss_sum += loss.detach().double() * n
        hard = y if y.dim() == 1 else y.argmax(dim=1)
        state.correct += topk_correct(logits.detach(), hard, ks=(1,))[1]
        bad |= ~torch.isfinite(loss.detach())
        state.seen += n
        state.batches_done += 1
        reason = ""
        if state.batches_done % log_every == 0 or state.batches_done == total_batches:
            values: list[Tensor | float] = [state.loss_sum, state.correct, state.seen, bad]
            if group.size > 1:
                values += stop_flags(should_stop())
            loss_sum, correct, seen, nan, *flags = group.sum(values, device=place.device)
            if nan:  # one sync every log_every steps
                stopped = "nan"
                break
            reason = agreed_stop(flags) if flags else ""
            error = 1.0 - correct / max(1, seen)
            schedule.observe_train_error(error)
            if on_log is not None and seen > window[2]:
                n_window = seen - window[2]
                on_log(step, (loss_sum - window[0]) / n_window,
                       1.0 - (correct - window[1]) / n_window)  # fmt: skip
            window = [loss_sum, correct, seen]
            if progress is not None:
                progress.update(
                    log_every
                    if state.batches_done % log_every == 0
                    else state.batches_done % log_every,
                    loss=loss_sum / max(1, seen),
                    top1=100.0 * (1.0 - error),
                    lr=schedule.lr,
                )
        if max_steps is not None and step >= max_steps:
            stopped = "iterations"
            break
        if group.size == 1:
            reason = should_stop()
        if reason:
            stopped = reason
            break
    loss_sum, correct, seen, nan = group.sum([state.loss_sum, state.correct, state.seen, bad],
                                             device=place.device)  # fmt: skip
    if not stopped and nan:
        stopped = "nan"
    state.seconds += time.perf_counter() - start
    metrics = {
        "train_loss": loss_sum / max(1, seen),
        "train_top1": 100.0 * correct / max(1, seen),
        "lr": schedule.lr,
        "images_per_s": seen / max(state.seconds, 1e-9),  # of all ranks together
        "train_time_s": state.seconds,
    }
    return EpochOutcome(metrics, step, stopped)
