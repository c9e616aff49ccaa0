"""The training loop as small functions: one epoch of training, one pass of evaluation.

Both return plain metric dicts. Nothing here syncs with the device on every step: losses
and correct counts accumulate as tensors and are read every ``log_every`` steps (for the
progress bar, the NaN guard and the paper's warm-up rule) and at the end.

Under data parallelism (a :class:`~resnetlab.train.distributed.Group` of several ranks) those
reads are where the ranks meet: one all-reduce sums the counts, ORs the NaN flags and merges
the stop requests, so every rank logs the global figures and stops at the same step.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from resnetlab.errors import InvalidValueError
from resnetlab.train.device import Placement
from resnetlab.train.distributed import Group, agreed_stop, stop_flags
from resnetlab.train.metrics import ConfusionMatrix, ProgressBar, topk_correct
from resnetlab.train.optim import LRSchedule


def autocast(place: Placement) -> contextlib.AbstractContextManager[None]:
    if place.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(place.device.type, dtype=place.autocast)


def to_input(x: Tensor, place: Placement) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if place.channels_last else x


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
    place: Placement,
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


TTA_VIEWS = ("none", "flip", "flip-shift")


def shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """Translate a batch by ``(dy, dx)`` pixels, filling the edge by reflection."""
    p = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


def tta_logits(model: nn.Module, x: Tensor, tta: str = "none") -> Tensor:
    """The model's logits, averaged over test-time views of ``x``.

    ``flip``: the image and its mirror, equally weighted. ``flip-shift`` (airbench's
    mirror-translate): half the weight on that pair, a quarter on each of the pair shifted
    by one pixel up-left and down-right: the training crops' offsets, so every view is one
    the model saw. A mirror-symmetric model gets the same logits from ``flip`` as from none.
    """

    def mirror(v: Tensor) -> Tensor:
        out: Tensor = model(v).float()
        if tta == "none":
            return out
        mirrored: Tensor = model(v.flip(-1)).float()
        return 0.5 * (out + mirrored)

    if tta not in TTA_VIEWS:
        raise InvalidValueError(f"tta must be one of {', '.join(TTA_VIEWS)}, got {tta!r}")
    logits = mirror(x)
    if tta == "flip-shift":
        moved = mirror(shift(x, -1, -1)) + mirror(shift(x, 1, 1))
        logits = 0.5 * logits + 0.25 * moved
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    place: Placement,
    loss_fn: nn.Module | None = None,
    confusion: ConfusionMatrix | None = None,
    group: Group | None = None,
    tta: str = "none",
) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy (%) over every batch; fills ``confusion`` if given.
    With a ``group``, each rank passes its shard of the data and the sums are all-reduced.
    ``tta``: the views whose logits are averaged (:func:`tta_logits`)."""
    model.eval()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    loss_sum = torch.zeros((), dtype=torch.float64, device=place.device)
    correct = {
        1: torch.zeros((), dtype=torch.int64, device=place.device),
        5: torch.zeros((), dtype=torch.int64, device=place.device),
    }
    seen = 0
    for x, y in batches:
        with autocast(place):
            logits = tta_logits(model, to_input(x, place), tta)
        loss_sum += loss_fn(logits, y).double() * y.shape[0]
        for k, v in topk_correct(logits, y, ks=(1, 5)).items():
            correct[k] += v
        if confusion is not None:
            confusion.update(logits.argmax(dim=1), y)
        seen += y.shape[0]
    total, top1, top5, n = (group or Group()).sum([loss_sum, correct[1], correct[5], seen],
                                                 device=place.device)  # fmt: skip
    n = max(1.0, n)
    return {
        "loss": total / n,
        "top1": 100.0 * top1 / n,
        "top5": 100.0 * top5 / n,  # k is clamped to the classes there are
    }
