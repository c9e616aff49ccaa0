"""What a run prints: a one-line progress bar per epoch (tqdm's) and a one-line summary per
epoch."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from tqdm import tqdm

from resnetlab.train.logs import row_number

__all__ = ["epoch_bar", "format_epoch"]


def epoch_bar(
    total: int,
    *,
    desc: str = "",
    initial: int = 0,
    stream: TextIO = sys.stderr,
    enabled: bool | None = None,
) -> tqdm:
    """tqdm's bar for one epoch of ``total`` steps, ``initial`` of them done already (a
    resumed epoch), on ``stream``. ``enabled=None`` draws only when ``stream`` is a
    terminal, so logs redirected to a file are not filled with carriage returns; ``False``
    (a rank other than 0) never draws. Redraws at most ~10 times a second."""
    if enabled is None:
        try:
            enabled = stream.isatty()
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            enabled = False
    return tqdm(
        total=max(0, total),
        desc=desc,
        initial=initial,
        file=stream,
        disable=not enabled,
        mininterval=0.1,
        dynamic_ncols=True,
    )


def format_epoch(row: Mapping[str, float | int | str]) -> str:
    """One console line for an epoch, e.g. ``epoch 3/30  train loss 1.234 top1 55.1%  val
    loss 1.300 top1 53.2% top5 94.0%  lr 0.1  1234 img/s  12.3 s``. Missing keys are left
    out; non-numeric values are shown as they are."""
    parts: list[str] = []
    epoch = row.get("epoch")
    if epoch is not None:
        total = row.get("epochs")
        parts.append(f"epoch {epoch}" + (f"/{total}" if total is not None else ""))
    for split in ("train", "val", "test"):
        bits = []
        loss = row_number(row, f"{split}_loss")
        if loss is not None:
            bits.append(f"loss {loss:.3f}")
        for k in ("top1", "top5"):
            acc = row_number(row, f"{split}_{k}")
            if acc is not None:
                bits.append(f"{k} {acc:.1f}%")
        if bits:
            parts.append(f"{split} " + " ".join(bits))
    lr = row_number(row, "lr")
    if lr is not None:
        parts.append(f"lr {lr:.4g}")
    speed = row_number(row, "images_per_s")
    if speed is not None:
        parts.append(f"{speed:.0f} img/s")
    secs = row_number(row, "epoch_time_s")
    if secs is not None:
        parts.append(f"{secs:.1f} s")
    return "  ".join(parts)
