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
from pathlib import Path
from typing import Any

from resnetlab.errors import InvalidValueError
from resnetlab.experiments.runs import RunRecord


class EarlierReportError(InvalidValueError):
    """An earlier report that cannot be folded in: unreadable, another experiment's, or
    without the per-run numbers a report needs."""


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
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
            model, seed = str(entry["model"]), int(entry["seed"])
            test, val = _numbers(data, entry, model, seed)
        except (KeyError, TypeError, ValueError, IndexError):
            raise EarlierReportError(
                f"{path}: a run without its test and validation numbers ({entry!r:.80})"
            ) from None
        results = {
            "status": str(entry.get("status", "completed")),
            "epochs": entry.get("epochs", 0),
            "iterations": entry.get("iterations", 0),
            "test": {"top1": test},
            "best_val_top1": val,
            "wall_time_s": float(entry.get("wall_s", 0.0)),
            "images_per_s": entry.get("images_per_s"),
            "code": str(entry.get("code") or code),  # a run folded in twice keeps its own
            **{k: entry.get(k) for k in ("hardware", "device", "precision", "data")},
        }
        records.append(
            RunRecord(
                Path(str(entry.get("folder", f"{model}-s{seed}"))),
                model,
                seed,
                results,
                epochs=[],
                steps=[],
                options=dict(entry.get("options") or {}),
                earlier=str(path),
            )
        )
    return records


def _numbers(
    data: dict[str, Any], entry: dict[str, Any], model: str, seed: int
) -> tuple[float, float]:
    """Test and best validation top-1 (%) of one run: from the run's own entry (reports
    written since these fields were added), else from the per-model lists of the Table 6
    report (``models[m]``: ``seeds``, ``test_error``, ``best_val_error``)."""
    if "test_top1" in entry:
        return float(entry["test_top1"]), float(entry["best_val_top1"])
    numbers = data["models"][model]
    i = list(numbers["seeds"]).index(seed)
    return 100.0 - float(numbers["test_error"][i]), 100.0 - float(numbers["best_val_error"][i])
