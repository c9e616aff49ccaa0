"""What a run prints: a one-line progress bar per epoch and a one-line summary per epoch."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TextIO

from resnetlab.train.logs import row_number

__all__ = ["ProgressBar", "format_epoch"]


class ProgressBar:
    """A dependency-free, single-line progress bar for one epoch, redrawn with ``\\r``.

    ``enabled=None`` draws only when ``stream`` is a terminal, so logs redirected to a file
    are not filled with carriage returns. Redraws at most ~10 times a second.
    """

    _MIN_INTERVAL_S = 0.1
    _WIDTH = 20

    def __init__(
        self,
        total: int,
        *,
        desc: str = "",
        stream: TextIO = sys.stderr,
        enabled: bool | None = None,
    ) -> None:
        self.total = max(0, total)
        self.desc = desc
        self.stream = stream
        if enabled is None:
            try:
                enabled = stream.isatty()
            except (AttributeError, ValueError):  # no isatty, or a closed stream
                enabled = False
        self.enabled = enabled
        self.done = 0
        self.postfix: dict[str, float] = {}
        self._start = time.monotonic()
        self._last_draw = -math.inf
        self._last_len = 0
        self._closed = False

    def update(self, n: int = 1, **postfix: float) -> None:
        """Advance by ``n`` steps; ``postfix`` values (e.g. ``loss=1.234``) are shown after."""
        self.done += n
        self.postfix.update(postfix)
        if not self.enabled or self._closed:
            return
        now = time.monotonic()
        if now - self._last_draw >= self._MIN_INTERVAL_S or self.done >= self.total:
            self._draw(now)

    def _render(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed  # it/s
        parts = [self.desc] if self.desc else []
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * self._WIDTH)
            parts.append("[" + "#" * filled + "." * (self._WIDTH - filled) + "]")
            parts.append(f"{self.done}/{self.total} {100 * frac:3.0f}%")
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            parts.append(f"{rate:.1f} it/s  ETA {_clock(eta)}")
        else:
            parts.append(f"{self.done} it  {rate:.1f} it/s  {_clock(elapsed)}")
        parts.extend(f"{k}={v:.4g}" for k, v in self.postfix.items())
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        text = self._render(now)
        # Pad over the tail of a longer previous line; \r alone does not erase it.
        pad = max(0, self._last_len - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._last_len = len(text)
        self._last_draw = now

    def close(self) -> None:
        """Draw the final state and end the line (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


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
