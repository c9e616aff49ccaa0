"""Metrics for training and evaluation: top-k counts, a confusion matrix, per-epoch logs
(CSV, JSON lines, optional TensorBoard), a console progress bar, training-curve charts and a
one-line epoch summary.

Conventions for a per-epoch row: accuracies are percentages (0–100) under ``train_top1``,
``val_top1``, ``val_top5``…; losses under ``train_loss`` and ``val_loss``; ``lr``;
``images_per_s``; ``epoch_time_s``; ``epoch`` (1-based) and optionally ``epochs`` (total).

Charts are written atomically (a temporary file beside the target, then a rename) and select
matplotlib's headless Agg backend only when called, so importing this module has no side effects.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import torch
from torch import Tensor

from resnetlab.fileio import check_writable, pyplot, save_figure

__all__ = [
    "ConfusionMatrix",
    "MetricsLogger",
    "ProgressBar",
    "StepLog",
    "format_epoch",
    "plot_curves",
    "read_metrics",
    "read_steps",
    "topk_correct",
    "truncate_metrics",
]

Row = Mapping[str, float | int | str]

CSV_NAME = "metrics.csv"
JSONL_NAME = "metrics.jsonl"
STEPS_NAME = "steps.csv"
STEP_FIELDS = ("step", "epoch", "train_loss", "train_error")
TENSORBOARD_DIR = "tensorboard"


# --------------------------------------------------------------------------- top-k


def topk_correct(
    logits: Tensor, targets: Tensor, ks: tuple[int, ...] = (1, 5)
) -> dict[int, Tensor]:
    """Count the samples whose target is among the ``k`` highest logits, for each ``k``.

    ``logits``: ``(N, C)`` scores; ``targets``: ``(N,)`` class indices in ``[0, C)``. Returns
    ``{k: count}`` with each count a 0-dim int64 tensor on ``logits.device``; nothing is copied
    to the host, so a training loop can sum counts over an epoch without a sync per batch.
    A ``k`` above ``C`` is clamped to ``C`` (top-5 of a 3-class problem counts every sample).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(
            f"targets must be (N,) = ({logits.shape[0]},), got shape {tuple(targets.shape)}"
        )
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be at least 1, got {ks}")
    if not ks:
        return {}
    num_classes = logits.shape[1]
    maxk = min(max(ks), num_classes)
    # One topk for the largest k: the first k columns of it are the top-k for any smaller k.
    top = logits.topk(maxk, dim=1, largest=True, sorted=True).indices  # (N, maxk)
    hits = top == targets.view(-1, 1).to(top.dtype)  # (N, maxk), at most one True per row
    return {k: hits[:, : min(k, num_classes)].any(dim=1).sum(dtype=torch.int64) for k in ks}


# --------------------------------------------------------------------------- confusion matrix


class ConfusionMatrix:
    """Counts of (true class, predicted class) pairs: ``matrix[t, p]``, rows are true classes.

    Counts accumulate on the device of the first :meth:`update` (so evaluation on a GPU does
    not copy each batch to the host); :attr:`matrix` and the reports read a CPU copy.
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self._counts = torch.zeros(num_classes * num_classes, dtype=torch.int64)

    def update(self, preds: Tensor, targets: Tensor) -> None:
        """Add a batch. ``preds``: ``(N,)`` predicted class indices, or ``(N, C)`` logits (the
        argmax is taken); ``targets``: ``(N,)`` true class indices. Both in ``[0, C)``."""
        if preds.ndim == 2:
            preds = preds.argmax(dim=1)
        if preds.ndim != 1 or preds.shape != targets.shape:
            raise ValueError(
                f"preds (N,) or (N, C) and targets (N,) must agree, got "
                f"{tuple(preds.shape)} and {tuple(targets.shape)}"
            )
        c = self.num_classes
        p = preds.detach().to(torch.int64)
        t = targets.detach().to(device=p.device, dtype=torch.int64)
        # An out-of-range index would not fail: t*C + p lands in some other cell. bincount
        # has to sync to size its output anyway, so this check costs little extra.
        if bool(((p < 0) | (p >= c) | (t < 0) | (t >= c)).any()):
            raise ValueError(f"class indices must lie in [0, {c})")
        if self._counts.device != p.device:
            self._counts = self._counts.to(p.device)
        self._counts += torch.bincount(t * c + p, minlength=c * c)

    def reset(self) -> None:
        """Zero every count (keeps the device)."""
        self._counts.zero_()

    @property
    def matrix(self) -> Tensor:
        """``(C, C)`` int64 counts on the CPU; rows are true classes, columns predictions."""
        return self._counts.detach().cpu().view(self.num_classes, self.num_classes).clone()

    def per_class_accuracy(self) -> list[float]:
        """Fraction (0–1) of each true class predicted correctly (recall); ``nan`` for a
        class with no samples."""
        m = self.matrix
        support = m.sum(dim=1).tolist()
        correct = m.diagonal().tolist()
        return [cor / n if n else math.nan for cor, n in zip(correct, support, strict=True)]

    def accuracy(self) -> float:
        """Overall fraction (0–1) correct; ``nan`` before any sample is counted."""
        m = self.matrix
        total = int(m.sum())
        return int(m.diagonal().sum()) / total if total else math.nan

    def _names(self, class_names: Sequence[str] | None) -> list[str]:
        if class_names is None:
            return [str(i) for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names given for {self.num_classes} classes")
        return [str(n) for n in class_names]

    def to_text(self, class_names: Sequence[str] | None = None) -> str:
        """An aligned table: one row per true class, one column per predicted class, and a
        last column with the class's accuracy in %. Class indices label it when no names are
        given."""
        names = self._names(class_names)
        rows = self.matrix.tolist()
        accs = self.per_class_accuracy()
        corner = "true \\ pred"
        label_w = max(len(corner), *(len(n) for n in names))
        biggest = max((len(str(v)) for row in rows for v in row), default=1)
        col_ws = [max(len(n), biggest) for n in names]
        acc_head = "acc %"
        lines = [
            "  ".join(
                [corner.ljust(label_w)]
                + [n.rjust(w) for n, w in zip(names, col_ws, strict=True)]
                + [acc_head]
            )
        ]
        for name, row, acc in zip(names, rows, accs, strict=True):
            acc_s = "-" if math.isnan(acc) else f"{100 * acc:.1f}"
            lines.append(
                "  ".join(
                    [name.ljust(label_w)]
                    + [str(v).rjust(w) for v, w in zip(row, col_ws, strict=True)]
                    + [acc_s.rjust(len(acc_head))]
                )
            )
        total = self.accuracy()
        overall = "-" if math.isnan(total) else f"{100 * total:.2f}%"
        lines.append(f"overall accuracy {overall} of {int(self.matrix.sum())} samples")
        return "\n".join(lines)

    def plot(
        self,
        path: str | os.PathLike[str],
        class_names: Sequence[str] | None = None,
        *,
        title: str = "",
    ) -> None:
        """Write a PNG heatmap. Colour is the row-normalised fraction (so rare classes are as
        visible as common ones); cells show raw counts while the grid is small enough to read
        (up to 30 classes). Written atomically."""
        out = check_writable(path)
        names = self._names(class_names)
        m = self.matrix
        c = self.num_classes
        support = m.sum(dim=1, keepdim=True).clamp(min=1)
        frac = (m.double() / support).numpy()
        plt = pyplot()
        side = min(max(4.0, 0.45 * c + 2.0), 20.0)
        fig, ax = plt.subplots(figsize=(side + 1.0, side))
        try:
            image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
            if c <= 50:  # beyond that the labels overlap into a black bar
                ax.set_xticks(range(c), labels=names, rotation=45, ha="right")
                ax.set_yticks(range(c), labels=names)
            if c <= 30:
                counts = m.tolist()
                for i in range(c):
                    for j in range(c):
                        ax.text(
                            j,
                            i,
                            str(counts[i][j]),
                            ha="center",
                            va="center",
                            fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black",
                        )
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            acc = self.accuracy()
            subtitle = "accuracy -" if math.isnan(acc) else f"accuracy {100 * acc:.2f}%"
            ax.set_title(f"{title}\n{subtitle}" if title else subtitle)
            save_figure(fig, out, dpi=110)
        finally:
            plt.close(fig)


# --------------------------------------------------------------------------- per-epoch logs


class MetricsLogger:
    """Append one row per epoch to ``run_dir/metrics.csv`` and ``run_dir/metrics.jsonl``, and
    to TensorBoard (``run_dir/tensorboard``) when ``torch.utils.tensorboard`` imports.

    Files already in ``run_dir`` (a resumed run) are appended to, and an existing CSV keeps its
    header. Each row is flushed as it is written, so a killed run keeps every logged epoch.
    The CSV columns are fixed by the first row (or the existing header): keys missing from a
    later row are left empty and new keys go to the JSON lines only (with a warning).
    """

    def __init__(self, run_dir: Path, *, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / CSV_NAME
        self.jsonl_path = self.run_dir / JSONL_NAME
        self._want_tb = tensorboard
        self._tb: Any = None
        self._csv_file: TextIO | None = None
        self._csv: csv.DictWriter[str] | None = None
        self._jsonl_file: TextIO | None = None
        self._warned: set[str] = set()
        self._rows = 0
        self._closed = False

    def _open(self, first: Row) -> None:
        # Opened on the first row, not in __init__: a run that dies before an epoch ends
        # leaves no empty files behind.
        header = _read_csv_header(self.csv_path)
        self._csv_file = _open_append(self.csv_path)
        fields = header or list(first)
        self._csv = csv.DictWriter(
            self._csv_file, fieldnames=fields, restval="", extrasaction="ignore"
        )
        if not header:
            self._csv.writeheader()
        self._jsonl_file = _open_append(self.jsonl_path)
        if self._want_tb:
            try:
                module = importlib.import_module("torch.utils.tensorboard")
            except ImportError:  # the tensorboard package is optional
                module = None
            if module is not None:
                self._tb = module.SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR))

    def log(self, row: dict[str, float | int | str]) -> None:
        """Write one epoch's row (values: numbers or strings) and flush it to disk."""
        if self._closed:
            raise ValueError("MetricsLogger is closed")
        if self._csv is None:
            self._open(row)
        assert self._csv is not None
        assert self._csv_file is not None
        assert self._jsonl_file is not None
        extra = [k for k in row if k not in self._csv.fieldnames and k not in self._warned]
        if extra:
            self._warned.update(extra)
            warnings.warn(
                f"{self.csv_path}: columns {extra} are not in the CSV header; "
                f"they are kept in {JSONL_NAME} only",
                stacklevel=2,
            )
        self._csv.writerow(row)
        self._csv_file.flush()
        self._jsonl_file.write(json.dumps(row) + "\n")
        self._jsonl_file.flush()
        self._rows += 1
        if self._tb is not None:
            epoch = row.get("epoch")
            step = int(epoch) if isinstance(epoch, int | float) else self._rows
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float):
                    self._tb.add_scalar(key, value, global_step=step)
            self._tb.flush()

    def close(self) -> None:
        """Close the files (idempotent)."""
        self._closed = True
        for f in (self._csv_file, self._jsonl_file):
            if f is not None:
                f.close()
        if self._tb is not None:
            self._tb.close()
        self._csv_file = self._jsonl_file = self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_csv_header(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def _open_append(path: Path) -> TextIO:
    """Open for appending; if a killed run left a last line without its newline, end it so
    the next row starts on a line of its own."""
    needs_newline = False
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as raw:
            raw.seek(-1, os.SEEK_END)
            needs_newline = raw.read(1) != b"\n"
    f = path.open("a", newline="", encoding="utf-8")
    if needs_newline:
        f.write("\n")
    return f


def read_metrics(run_dir: Path) -> list[dict[str, float | str]]:
    """The rows of ``run_dir/metrics.jsonl`` in order (``[]`` if there is none). A line that
    does not parse (cut short by a kill) is skipped."""
    path = Path(run_dir) / JSONL_NAME
    if not path.is_file():
        return []
    rows: list[dict[str, float | str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def truncate_metrics(run_dir: Path, epoch: int) -> None:
    """Drop the rows of epochs after ``epoch`` from ``metrics.jsonl`` and ``metrics.csv``: a
    run resumed from the checkpoint of ``epoch`` trains them again (an epoch is logged just
    before its checkpoint is written, so a kill or a failed save in between leaves its row)."""
    from resnetlab.fileio import write_text_atomic

    jsonl = Path(run_dir) / JSONL_NAME
    if jsonl.is_file():
        lines = jsonl.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if _row_epoch(line) <= epoch]
        if len(kept) != len(lines):
            write_text_atomic(jsonl, "".join(f"{line}\n" for line in kept))
    path = Path(run_dir) / CSV_NAME
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if rows and "epoch" in rows[0]:
            col = rows[0].index("epoch")
            kept_rows = [rows[0]] + [
                r for r in rows[1:] if len(r) > col and _as_int(r[col]) <= epoch
            ]
            if len(kept_rows) != len(rows):
                buf = io.StringIO()
                csv.writer(buf).writerows(kept_rows)
                write_text_atomic(path, buf.getvalue())


def _as_int(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        return 1 << 62  # a line cut short by a kill: dropped


def _row_epoch(line: str) -> int:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return 1 << 62
    return int(row.get("epoch", 0)) if isinstance(row, dict) else 1 << 62


class StepLog:
    """``run_dir/steps.csv``: the training loss and error every ``log_every`` steps (the
    paper plots training error against iterations). Rows are flushed as written; a resumed
    run may repeat steps after its checkpoint, and ``read_steps`` keeps the last of each."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / STEPS_NAME
        self._file: TextIO | None = None

    def log(self, step: int, epoch: int, loss: float, error: float) -> None:
        if self._file is None:
            new = not self.path.is_file() or self.path.stat().st_size == 0
            self._file = _open_append(self.path)
            if new:
                self._file.write(",".join(STEP_FIELDS) + "\n")
        self._file.write(f"{step},{epoch},{loss:.6g},{error:.6g}\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_steps(run_dir: Path) -> list[dict[str, float]]:
    """The rows of ``run_dir/steps.csv`` by step, one per step (the last written wins);
    ``[]`` when there is none. Lines cut short by a kill are skipped."""
    path = Path(run_dir) / STEPS_NAME
    if not path.is_file():
        return []
    rows: dict[int, dict[str, float]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            try:
                row = {k: float(raw[k]) for k in STEP_FIELDS}
            except (TypeError, ValueError, KeyError):
                continue
            rows[int(row["step"])] = row
    return [rows[k] for k in sorted(rows)]


# --------------------------------------------------------------------------- progress bar


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


# --------------------------------------------------------------------------- curves and text


def _num(row: Mapping[str, float | int | str], key: str) -> float | None:
    """``row[key]`` as a float, or None if absent or not a number (rows read back from a CSV
    hold strings, hence the parse)."""
    value = row.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def plot_curves(
    rows: Sequence[Mapping[str, float | int | str]],
    path: Path,
    *,
    title: str = "",
) -> None:
    """Write a PNG of training curves from per-epoch rows: loss (train, val), top-1 accuracy
    in % (train, val) and learning rate (log scale), against ``epoch`` (or the row number).
    Keys that are absent are skipped; a panel with no data says so. Written atomically."""
    out = check_writable(path)
    xs = [_num(r, "epoch") for r in rows]
    epochs = [x if x is not None else float(i + 1) for i, x in enumerate(xs)]

    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [(e, v) for e, r in zip(epochs, rows, strict=True) if (v := _num(r, key)) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    try:
        panels = (
            ("loss", "loss", ("train_loss", "val_loss")),
            ("top-1 accuracy", "top-1 accuracy (%)", ("train_top1", "val_top1")),
            ("learning rate", "learning rate", ("lr",)),
        )
        for ax, (name, ylabel, keys) in zip(axes, panels, strict=True):
            drawn = False
            for key in keys:
                x, y = series(key)
                if not x:
                    continue
                label = key.split("_")[0] if key != "lr" else "lr"
                if key == "val_top1":
                    label += f" (best {max(y):.2f}%)"
                ax.plot(x, y, "-" if len(x) > 1 else "o", label=label)
                drawn = True
                if key == "lr" and all(v > 0 for v in y):  # log scale cannot show 0
                    ax.set_yscale("log")
            if drawn:
                ax.legend()
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 2.5" ticks
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        save_figure(fig, out, dpi=110)
    finally:
        plt.close(fig)


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
        loss = _num(row, f"{split}_loss")
        if loss is not None:
            bits.append(f"loss {loss:.3f}")
        for k in ("top1", "top5"):
            acc = _num(row, f"{split}_{k}")
            if acc is not None:
                bits.append(f"{k} {acc:.1f}%")
        if bits:
            parts.append(f"{split} " + " ".join(bits))
    lr = _num(row, "lr")
    if lr is not None:
        parts.append(f"lr {lr:.4g}")
    speed = _num(row, "images_per_s")
    if speed is not None:
        parts.append(f"{speed:.0f} img/s")
    secs = _num(row, "epoch_time_s")
    if secs is not None:
        parts.append(f"{secs:.1f} s")
    return "  ".join(parts)


# --------------------------------------------------------------------------- matplotlib
