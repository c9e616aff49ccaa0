"""One pass of evaluation: loss, top-1 and top-5 over batches, with test-time views.

The same function validates during training, tests at its end, and evaluates a checkpoint
(``resnetlab eval``), so the three figures are computed alike. Counts accumulate on the
device; one sync at the end reads them (all-reduced over the ranks of a :class:`Group`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnetlab.errors import InvalidValueError
from resnetlab.runtime.execution import Execution, autocast, to_input
from resnetlab.runtime.group import Group
from resnetlab.runtime.metrics import ConfusionMatrix, topk_correct

__all__ = ["TTA_VIEWS", "evaluate", "shift", "tta_logits"]


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
    place: Execution,
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
    total, top1, top5, n = (group or Group()).sum(
        [loss_sum, correct[1], correct[5], seen], device=place.device
    )
    n = max(1.0, n)
    return {
        "loss": total / n,
        "top1": 100.0 * top1 / n,
        "top5": 100.0 * top5 / n,  # k is clamped to the classes there are
    }
