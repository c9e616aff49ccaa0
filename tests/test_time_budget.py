"""``run.budget_min`` (``train --minutes``): the schedule's length is fixed from the time of
the last warm-up epoch so that training and the test end within the budget; the length
persists in the checkpoint; schedules it cannot size are refused in one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from resnetlab.runtime.checkpoint import Checkpoint
from resnetlab.runtime.config import ConfigError, ScheduleConfig, resolve_config
from resnetlab.train import time_budget
from resnetlab.train.fitting import fit
from resnetlab.train.logs import read_metrics
from resnetlab.train.optim import LRSchedule
from resnetlab.train.time_budget import check_budget, epochs_that_fit, fixing_epoch


def test_epochs_that_fit() -> None:
    # 10 min budget, 2 epochs done in 70 s, 30 s per epoch, 6 s kept for the test, 5% of
    # the rest as slack: (600 - 70 - 6) × 0.95 // 30 = 16 more epochs (17 without slack).
    fit_ = epochs_that_fit(budget_s=600, elapsed_s=70, epoch_s=30, test_s=6, epochs_done=2)
    assert fit_ == 18
    # Out of time already: no more epochs, never fewer than those done.
    assert epochs_that_fit(budget_s=60, elapsed_s=90, epoch_s=30, test_s=6, epochs_done=2) == 2
    # Within the slack of another epoch: not taken.
    assert epochs_that_fit(budget_s=100, elapsed_s=37, epoch_s=30, test_s=2, epochs_done=1) == 2
    assert epochs_that_fit(budget_s=100, elapsed_s=30, epoch_s=30, test_s=2, epochs_done=1) == 3


def test_the_length_is_fixed_after_the_last_warm_up_epoch() -> None:
    assert fixing_epoch(resolve_config("fast", {"run.budget_min": 5})) == 2  # 2 warm-up epochs
    cfg = resolve_config("fast", {"run.budget_min": 5, "schedule.warmup_epochs": 1.5})
    assert fixing_epoch(cfg) == 2
    check_budget(resolve_config("fast", {"run.budget_min": 5}))  # the fast recipe is sizable


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({}, "sizes a warmup-linear or cosine schedule"),  # paper-cifar: the step schedule
        ({"schedule.name": "onecycle", "schedule.warmup_epochs": 0}, "warmup_epochs ≥ 1"),
        ({"schedule.name": "cosine", "schedule.warmup_epochs": 1}, "or run.iterations, not"),
    ],
)
def test_schedules_a_budget_cannot_size_are_refused(over: dict[str, Any], needle: str) -> None:
    cfg = resolve_config("paper-cifar", {"run.budget_min": 5, **over})
    with pytest.raises(ConfigError, match=needle):
        check_budget(cfg)


def _budget_run(tmp_path: Path, name: str, minutes: float = 30.0) -> Any:
    return resolve_config(
        "fast",
        {
            "data.source": "sample",
            "data.limit_per_class": 8,
            "data.batch_size": 16,
            "run.budget_min": minutes,
            "run.epochs": 50,  # stands in for the length during the warm-up
            "schedule.warmup_epochs": 1,
            "run.precision": "fp32",
            "run.compile": False,
            "run.out_dir": str(tmp_path),
            "run.name": name,
            "run.test": False,
        },
    )


def test_a_budgeted_run_ends_where_its_budget_fixed_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    """The measured epoch time is what the length is computed from (the arithmetic is
    tested above; here a fixed answer, so the test does not depend on the machine's speed):
    the run stops after that many epochs, the one-cycle decay reaches zero at its new end,
    and the checkpoint keeps the length for a resume."""
    seen: dict[str, float] = {}

    def three(**kw: float) -> int:
        seen.update(kw)
        return 3

    monkeypatch.setattr(time_budget, "epochs_that_fit", three)
    lines = log_lines
    result = fit(_budget_run(tmp_path, "budget"))
    assert result.status == "completed" and result.epochs_done == 3
    assert seen["epochs_done"] == 1 and seen["budget_s"] == 1800 and seen["epoch_s"] > 0
    assert any("budget 30 min: epoch 1 took" in x and "ends after epoch 3" in x for x in lines)
    assert any("until a 30-min budget fixes it" in x for x in lines)  # the run header
    ckpt = Checkpoint.load(result.run_dir / "last.pt")
    assert ckpt.schedule is not None
    spe = ckpt.step // 3
    assert ckpt.schedule["total_steps"] == 3 * spe and ckpt.schedule["length_fixed"] is True
    rows = read_metrics(result.run_dir)
    assert [r["epochs"] for r in rows] == [3, 3, 3]  # fixed before epoch 1 was logged
    assert rows[-1]["lr"] < 0.2 * 0.4  # the decay ran to the new end (50 epochs: ~0.19)


def test_the_budget_is_the_time_limit_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine that slows down after the length is fixed: the budget stops the run."""
    cfg = _budget_run(tmp_path, "limit", minutes=1e-6)
    monkeypatch.setattr(time_budget, "epochs_that_fit", lambda **kw: 40)
    result = fit(cfg)
    assert result.status == "time" and result.epochs_done <= 1


def _schedule() -> LRSchedule:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cfg = ScheduleConfig(name="warmup-linear")
    return LRSchedule(opt, cfg, base_lr=0.1, steps_per_epoch=10, total_steps=100, model_depth=20)


def test_the_schedules_length_persists_and_old_checkpoints_keep_theirs() -> None:
    sched, again = _schedule(), _schedule()
    sched.total_steps, sched.length_fixed = 70, True
    again.load_state_dict(sched.state_dict())
    assert again.total_steps == 70 and again.length_fixed
    old = {k: v for k, v in sched.state_dict().items() if k not in ("total_steps", "length_fixed")}
    fresh = _schedule()
    fresh.load_state_dict(old)  # a checkpoint made before budgets: its planned length stays
    assert fresh.total_steps == 100 and not fresh.length_fixed


def _study_script() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "scripts" / "time_to_accuracy.py"
    spec = importlib.util.spec_from_file_location("time_to_accuracy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_study_runs_each_arm_once_and_reports_what_it_measured(tmp_path: Path) -> None:
    """scripts/time_to_accuracy.py on the shipped sample with a 12-second budget: a ledger row
    per arm (the exact command, the CPU, the load), a second call trains nothing, and the
    report's results.json holds the keys the study promises."""
    tta = _study_script()
    out, docs = tmp_path / "store", tmp_path / "docs"
    argv = ["--out", str(out), "--minutes", "0.2", "--data", "sample"]
    argv += ["--arm", "fast+flip=run.tta=flip,optim.norm_bias_decay=0"]
    for item in ("data.limit_per_class=4", "data.batch_size=16", "run.precision=fp32"):
        argv += ["--set", item]
    tta.main([*argv, "--set", "run.compile=false"])
    runs = json.loads((out / "ledger.json").read_text())["runs"]
    assert [r["recipe"] for r in runs] == ["fast+flip"]
    assert all(0 <= r["test_top1"] <= 100 and r["wall_min"] > 0 for r in runs)
    assert "--minutes 0.2" in runs[0]["command"] and "--set run.tta=flip" in runs[0]["command"]
    assert "--set optim.norm_bias_decay=0" in runs[0]["command"]
    mtime = (out / "ledger.json").stat().st_mtime_ns
    tta.main([*argv, "--set", "run.compile=false", "--report", str(docs)])
    assert (out / "ledger.json").stat().st_mtime_ns == mtime  # nothing trained again
    report = json.loads((docs / "results.json").read_text())["runs"]
    keys = {"model", "recipe", "wall_min", "test_top1", "seed", "cpu", "command"}
    assert all(keys <= set(r) for r in report) and len(report) == 1
    assert (docs / "time-to-accuracy.png").stat().st_size > 1000
    assert "| resnet20 | fast+flip | 0.2 |" in (docs / "report.md").read_text()
