"""The training runs behind the experiments, kept in one store and shared between them.

Every experiment is a set of jobs (a model and a seed under one recipe). A job's run folder
is ``<store>/<model>-s<seed>-<digest>``, where the digest covers every setting that changes
the result, so ``degradation`` and ``cifar-table`` reuse each other's ResNet runs when their
budgets agree. A finished run is read, an interrupted one resumed (exactly, from its
``last.pt``), a missing one trained: re-running an experiment's command after a kill or
SIGTERM continues where it stopped instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from resnetlab.runtime.config import SCHEDULE_ALIASES, ConfigError, TrainConfig, resolve_config
from resnetlab.runtime.folder_layout import RunFolder
from resnetlab.train.fitting import fit
from resnetlab.train.logs import read_metrics, read_steps
from resnetlab.train.start_or_resume import clear_dead_run

log = logging.getLogger(__name__)
FINISHED = ("completed", "iterations", "early_stop")
# Settings that do not change what a run computes: where it lives, how it reports, and how
# its step is executed (a compiled step fuses the same arithmetic into fewer kernels, as a
# thread count or oneDNN's kernel choice changes rounding and nothing else), so a run made
# eager and one made compiled are the same run.
_IGNORED = {"out_dir", "name", "time_limit_min", "compile", "compile_mode"}


class RunInterruptedError(Exception):
    """A job stopped (signal, time limit, NaN); re-running the command resumes it."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


# The CPU budget protocol (the default of ``resnetlab reproduce``): the paper's nets, data,
# augmentation, split and selection, trained for a few epochs with a one-cycle schedule that a
# short budget suits (a cut-down step schedule decays before a deep net has recovered from its
# start). What differs from the paper is written in every report (``Budget.describe``).
BUDGET_EPOCHS = 10
BUDGET_LR = 0.2  # the one-cycle peak
BUDGET_WARMUP = 0.2  # share of the epochs spent warming up linearly from 0
BUDGET_WEIGHT_DECAY = 5e-4
PAPER_ITERATIONS = 64000


@dataclass(frozen=True)
class Budget:
    """The schedule every job of an experiment shares.

    ``protocol="budget"`` (the default): ``epochs`` epochs of one-cycle learning rate (linear
    warm-up over the first fifth to ``lr``, 0.2 by default, then linear decay to zero), SGD
    with Nesterov momentum 0.9 and weight decay 5e-4. ``protocol="step"``: the paper's §4.2
    schedule, 64k iterations at lr 0.1 divided by 10 at 32k and 48k, or ``iterations``
    steps with the milestones kept in proportion (halfway and three quarters), SGD momentum
    0.9, weight decay 1e-4. Both train at batch 128 on the 45k/5k split with the paper's
    augmentation and option-A shortcuts.
    """

    protocol: Literal["budget", "step"] = "budget"
    epochs: int = BUDGET_EPOCHS  # budget protocol
    iterations: int = PAPER_ITERATIONS  # step protocol
    batch_size: int = 128
    lr: float | None = None  # None: the protocol's (0.2 budget, 0.1 step)
    precision: str = "auto"
    data: str = "cifar10"
    data_root: str | None = None
    limit_per_class: int | None = None
    device: str = "auto"
    log_every: int = 25
    extra: dict[str, Any] = field(default_factory=dict)  # more dotted overrides

    @property
    def peak_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return BUDGET_LR if self.protocol == "budget" else 0.1

    @property
    def is_paper(self) -> bool:
        return self.protocol == "step" and self.iterations >= PAPER_ITERATIONS

    def schedule_overrides(self) -> dict[str, Any]:
        if self.protocol == "step":
            n = self.iterations
            return {
                "schedule.milestones": [n // 2, (3 * n) // 4],
                "run.iterations": n,
                "optim.lr": self.peak_lr,
            }
        return {
            "schedule.name": "warmup-linear",
            "schedule.warmup_epochs": BUDGET_WARMUP * self.epochs,
            "schedule.warmup_lr": None,  # the linear warm-up replaces §4.2's 0.01 start
            "schedule.milestones": [],
            "optim.lr": self.peak_lr,
            "optim.nesterov": True,
            "optim.weight_decay": BUDGET_WEIGHT_DECAY,
            "run.epochs": self.epochs,
            "run.iterations": None,
        }

    def config(self, model: str, seed: int, store: Path, **options: Any) -> TrainConfig:
        overrides: dict[str, Any] = {
            "model.name": model,
            "data.source": self.data,
            "data.root": self.data_root,
            "data.batch_size": self.batch_size,
            "data.limit_per_class": self.limit_per_class,
            **self.schedule_overrides(),
            "run.seed": seed,
            "run.precision": self.precision,
            # the fastest path measured for this device (compiled where it pays: AMX CPUs)
            "run.compile": "auto",
            "run.device": self.device,
            "run.out_dir": str(store),
            "run.log_every": self.log_every,
            **{f"model.options.{k}": v for k, v in options.items()},
            **self.extra,
        }
        cfg = resolve_config("paper-cifar", overrides)
        name = f"{model}{_options_tag(options)}-s{seed}-{digest(cfg)}"
        return resolve_config("paper-cifar", {**overrides, "run.name": name})


def _options_tag(options: dict[str, Any]) -> str:
    return "".join(f"-{k}{v}" for k, v in sorted(options.items()))


def digest(cfg: TrainConfig) -> str:
    """Eight hex digits naming everything in ``cfg`` that changes the trained weights."""
    text = json.dumps(_comparable(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _comparable(cfg: TrainConfig) -> dict[str, Any]:
    data = cfg.to_dict()
    # The digests of the runs made before the schedule's rename name it as they did then,
    # so a store's folder names stay those of the same runs.
    renamed = {new: old for old, new in SCHEDULE_ALIASES.items()}
    name = data["schedule"]["name"]
    data["schedule"]["name"] = renamed.get(name, name)
    data["run"] = {k: v for k, v in data["run"].items() if k not in _IGNORED}
    return data


def find_run(store: Path, cfg: TrainConfig) -> Path | None:
    """The run folder in ``store`` whose saved config, read with today's defaults, is
    ``cfg`` (so a setting added to resnetlab later does not orphan the runs made before it;
    their folder names keep the digest they were made with)."""
    prefix = str(cfg.run.name).rsplit("-", 1)[0]
    want = _comparable(cfg)
    for folder in sorted(store.glob(f"{prefix}-*")):
        try:
            saved = RunFolder(folder).config()
        except (OSError, yaml.YAMLError, ConfigError, TypeError):
            continue
        if _comparable(saved) == want:
            return folder
    return None


@dataclass(frozen=True)
class RunRecord:
    """What an experiment reads back from one finished run."""

    run_dir: Path
    model: str
    seed: int
    results: dict[str, Any]
    epochs: list[dict[str, Any]]  # metrics.jsonl rows
    steps: list[dict[str, float]]  # steps.csv rows
    # A run read back from an earlier report (``reproduce --previous``): its model options,
    # and the report's results.json it came from ("" for a run of the store).
    options: dict[str, Any] = field(default_factory=dict)
    earlier: str = ""

    @property
    def test_error(self) -> float:
        test = self.results.get("test") or {}
        return 100.0 - float(test.get("top1", float("nan")))

    @property
    def best_val_error(self) -> float:
        return 100.0 - float(self.results["best_val_top1"])

    def final_train_error(self, fraction: float = 0.1) -> float:
        """Mean training error (%) over the last ``fraction`` of the logged steps."""
        if not self.steps:
            return 100.0 - float(self.epochs[-1]["train_top1"]) if self.epochs else float("nan")
        tail = self.steps[-max(1, round(len(self.steps) * fraction)) :]
        return 100.0 * sum(r["train_error"] for r in tail) / len(tail)

    @property
    def images_per_s(self) -> float | None:
        """Training speed: the median over epochs (None if no epoch logged one)."""
        speeds = sorted(float(e["images_per_s"]) for e in self.epochs if e.get("images_per_s"))
        if not speeds:  # a run of an earlier report keeps the median it was reported with
            known = self.results.get("images_per_s")
            return float(known) if known else None
        return speeds[len(speeds) // 2]

    @property
    def iterations(self) -> int:
        """Training steps taken (0 if unknown, as for a run of an old earlier report)."""
        if self.steps:
            return int(self.steps[-1]["step"])
        return int(self.results.get("iterations") or 0)

    @property
    def wall_s(self) -> float:
        return float(self.results.get("wall_time_s", 0.0))


def read_run(run_dir: Path, model: str, seed: int) -> RunRecord | None:
    """The record of a finished run, or None if ``run_dir`` holds none."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if results.get("status") not in FINISHED:
        return None
    return RunRecord(run_dir, model, seed, results, read_metrics(run_dir), read_steps(run_dir))


def _locate(
    budget: Budget, model: str, seed: int, store: Path, **options: Any
) -> tuple[TrainConfig, Path]:
    """The job's config and its run folder in ``store`` (found, or the one to train in)."""
    cfg = budget.config(model, seed, store, **options)
    return cfg, find_run(store, cfg) or store / str(cfg.run.name)


def finished_run(
    budget: Budget, model: str, seed: int, store: Path, **options: Any
) -> RunRecord | None:
    """The job's finished run in ``store``, or None (never trains)."""
    return read_run(_locate(budget, model, seed, store, **options)[1], model, seed)


def run_job(
    budget: Budget,
    model: str,
    seed: int,
    store: Path,
    *,
    command: str | None = None,
    **options: Any,
) -> RunRecord:
    """Read, resume or train one job; raises :class:`RunInterruptedError` if it was stopped."""
    cfg, run_dir = _locate(budget, model, seed, store, **options)
    done = read_run(run_dir, model, seed)
    if done is not None:
        log.info(f"{model} seed {seed}: finished earlier in {run_dir}")
        return done
    resume = run_dir if RunFolder(run_dir).last.is_file() else None
    if resume is None and run_dir.is_dir():  # killed before its first checkpoint
        cleared = clear_dead_run(run_dir)
        if cleared:
            log.info(f"{model} seed {seed}: {run_dir} saved no checkpoint; starting it again")
    log.info(f"{model} seed {seed}: {'resuming' if resume else 'training'} in {run_dir}")
    result = fit(cfg, resume=resume, command=command)
    record = read_run(run_dir, model, seed)
    if record is None:
        raise RunInterruptedError(
            f"{model} seed {seed} stopped ({result.status}); run the same command again to "
            "continue where it stopped",
            result.status,
        )
    return record
