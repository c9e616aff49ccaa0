"""Per-epoch and per-step logs of a run: ``metrics.csv``, ``metrics.jsonl`` (and TensorBoard
when it imports), ``steps.csv``, and their readers.

Conventions for a per-epoch row: accuracies are percentages (0–100) under ``train_top1``,
``val_top1``, ``val_top5``…; losses under ``train_loss`` and ``val_loss``; ``lr``;
``images_per_s``; ``epoch_time_s``; ``epoch`` (1-based) and optionally ``epochs`` (total).
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from resnetlab.fileio import appending

__all__ = [
    "CSV_NAME",
    "JSONL_NAME",
    "STEPS_NAME",
    "MetricsLogger",
    "Row",
    "StepLog",
    "read_metrics",
    "read_steps",
    "row_number",
    "truncate_metrics",
]

Row = Mapping[str, float | int | str]

CSV_NAME = "metrics.csv"
JSONL_NAME = "metrics.jsonl"
STEPS_NAME = "steps.csv"
STEP_FIELDS = ("step", "epoch", "train_loss", "train_error")
TENSORBOARD_DIR = "tensorboard"


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
        with appending(self.csv_path):  # a full disk: one line naming the file
            self._csv.writerow(row)
            self._csv_file.flush()
        with appending(self.jsonl_path):
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
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
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
    # errors="replace": a damaged byte spoils its line (skipped below), not the command
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
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
        lines = jsonl.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = [line for line in lines if _row_epoch(line) <= epoch]
        if len(kept) != len(lines):
            write_text_atomic(jsonl, "".join(f"{line}\n" for line in kept))
    path = Path(run_dir) / CSV_NAME
    if path.is_file():
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
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
        with appending(self.path):  # a full disk: one line naming the file
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
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        for raw in csv.DictReader(f):
            try:
                row = {k: float(raw[k]) for k in STEP_FIELDS}
            except (TypeError, ValueError, KeyError):
                continue
            rows[int(row["step"])] = row
    return [rows[k] for k in sorted(rows)]


def row_number(row: Mapping[str, float | int | str], key: str) -> float | None:
    """``row[key]`` as a float, or None if absent or not a number (rows read back from a CSV
    hold strings, hence the parse)."""
    value = row.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except ValueError:
        return None
