"""The runs of an earlier report, folded into a new one (``reproduce --previous FILE``).

A run store may not outlive its machine; a committed report does. An experiment whose report
reads only each run's summary (test and validation error, wall time, the hardware it ran
on) can take those runs back from the ``results.json`` of an earlier report of the same
experiment, so that the seeds and depths trained on one machine and those trained on the
next make one table. Such a run is never trained again, and the new report lists it with the
code and hardware it was made with. The caller checks that the earlier report's protocol is
the request's (:func:`earlier_command` gives the command to compare).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from resnetlab.errors import InvalidValueError
from resnetlab.experiments.runs import RunRecord


class EarlierReportError(InvalidValueError):
    """An earlier report that cannot be folded in: unreadable, another experiment's, or
    without the per-run numbers a report needs."""


# A report's results.json holds a few hundred runs' summaries: tens of kB. Read no more than
# this (`--previous /dev/zero` read until memory ran out).
MAX_REPORT_BYTES = 64 * 2**20


def _read_text(path: Path) -> str:
    """The file's text, refused by its size before it is read: a regular file larger than
    :data:`MAX_REPORT_BYTES` by its size, anything else (a device, a pipe) once it has
    given that many bytes."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = b"" if size > MAX_REPORT_BYTES else f.read(MAX_REPORT_BYTES + 1)
    if size > MAX_REPORT_BYTES or len(data) > MAX_REPORT_BYTES:
        cap = MAX_REPORT_BYTES // 2**20
        what = f"{size / 2**20:,.0f} MiB" if size > MAX_REPORT_BYTES else f"over {cap} MiB"
        raise EarlierReportError(
            f"{path}: not a report's results.json ({what}, not read further; a report's "
            f"is tens of kB, and at most {cap} MiB are read)"
        )
    return data.decode("utf-8")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read_text(path))
    except FileNotFoundError:
        raise EarlierReportError(
            f"{path}: no such file (an earlier report's results.json)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EarlierReportError(f"{path}: not a report's results.json ({err})") from None
    runs = data.get("provenance", {}).get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not isinstance(data["provenance"].get("command"), str):
        raise EarlierReportError(
            f"{path}: not a report's results.json (it has no provenance: command and runs)"
        )
    return dict(data)


def earlier_command(path: Path) -> str:
    """The command line that wrote the report at ``path``."""
    return str(_read(path)["provenance"]["command"])


def earlier_runs(path: Path) -> list[RunRecord]:
    """The runs of the report at ``path`` as records with their summary numbers (no epochs,
    steps or weights: the run folders they name need not exist)."""
    data = _read(path)
    code = str(data["provenance"].get("code", "?"))
    records = []
    for entry in data["provenance"]["runs"]:
        try:
            records.append(_record(path, data, entry, code))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise EarlierReportError(
                f"{path}: a run without valid test and validation numbers ({entry!r:.80})"
            ) from None
    return records


def _percent(value: Any) -> float:
    """A top-1 in %: a number in [0, 100] (250 made an error of -150%, NaN "nan%")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    if not 0.0 <= float(value) <= 100.0:  # NaN fails both comparisons
        raise ValueError(f"not a percentage: {value!r}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"not a count: {value!r}")
    return value


def _text(value: Any) -> Any:
    if value is not None and not isinstance(value, str | dict):
        raise TypeError(f"not text: {value!r}")
    return value


def _record(path: Path, data: dict[str, Any], entry: Any, code: str) -> RunRecord:
    """One run of the earlier report, every field checked (the file is not ours to trust:
    a wrong type was an internal error, an impossible number went into the table)."""
    if not isinstance(entry, dict):
        raise TypeError("a run is not an object")
    model, seed = entry["model"], entry["seed"]
    if not isinstance(model, str) or isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError("model or seed")
    test, val = (_percent(v) for v in _numbers(data, entry, model, seed))
    wall, speed = entry.get("wall_s", 0.0), entry.get("images_per_s")
    for number in (wall, 0.0 if speed is None else speed):
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise TypeError(f"not a number: {number!r}")
        if not 0.0 <= float(number) < float("inf"):
            raise ValueError(f"not a time or speed: {number!r}")
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise TypeError("options")
    results = {
        "status": _text(entry.get("status", "completed")) or "completed",
        "epochs": _count(entry.get("epochs", 0)),
        "iterations": _count(entry.get("iterations", 0)),
        "test": {"top1": test},
        "best_val_top1": val,
        "wall_time_s": float(wall),
        "images_per_s": speed,
        "code": str(_text(entry.get("code")) or code),  # a run folded in twice keeps its own
        **{k: _text(entry.get(k)) for k in ("hardware", "device", "precision", "data")},
    }
    folder = _text(entry.get("folder", f"{model}-s{seed}"))
    return RunRecord(
        Path(str(folder)),
        model,
        seed,
        results,
        epochs=[],
        steps=[],
        options=dict(options),
        earlier=str(path),
    )


def _numbers(data: dict[str, Any], entry: dict[str, Any], model: str, seed: int) -> tuple[Any, Any]:
    """Test and best validation top-1 (%) of one run: from the run's own entry (reports
    written since these fields were added), else from the per-model lists of the Table 6
    report (``models[m]``: ``seeds``, ``test_error``, ``best_val_error``)."""
    if "test_top1" in entry:
        return entry["test_top1"], entry["best_val_top1"]
    numbers = data["models"][model]
    i = list(numbers["seeds"]).index(seed)
    return 100.0 - _percent(numbers["test_error"][i]), 100.0 - _percent(
        numbers["best_val_error"][i]
    )
