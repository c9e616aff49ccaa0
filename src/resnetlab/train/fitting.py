"""``fit(config)``: a whole training run, from data to report.

The run folder holds ``config.yaml``, ``last.pt`` (every epoch, and on interruption),
``best.pt`` (best validation top-1), ``metrics.csv``/``metrics.jsonl``, ``curves.png``
and, after the one evaluation on the test split, ``results.json``, ``confusion.png`` and
``report.md``. ``fit(..., resume=path)`` continues a run exactly where it stopped.

Under ``torchrun`` the same ``fit`` runs in every process (see
:mod:`resnetlab.train.distributed`): each trains on its share of every global batch, and
rank 0 alone writes the run folder, logs and draws the progress bar.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from resnetlab.runtime.checkpoint import Checkpoint
from resnetlab.runtime.config import ConfigError, TrainConfig, save_config
from resnetlab.runtime.folder_layout import RunFolder, checkpoint_file
from resnetlab.runtime.group import Group
from resnetlab.train.build import (
    PretrainedSource,
    resolve_pipeline,
    resolve_pretrained,
    resolve_pretrained_options,
)
from resnetlab.train.curves import plot_curves
from resnetlab.train.distributed import restart_point, session
from resnetlab.train.fit_steps import Run, open_run
from resnetlab.train.logs import MetricsLogger, StepLog, read_metrics, truncate_metrics
from resnetlab.train.plan import TrainPlan
from resnetlab.train.report import final_test, write_results
from resnetlab.train.start_or_resume import (
    check_out_dir,
    check_resumable,
    finished_run,
    new_run_dir,
    owned,
)
from resnetlab.train.time_budget import budget_epochs, check_budget, fixing_epoch

log = logging.getLogger(__name__)
EXIT_CODES = {
    "completed": 0,
    "time": 0,
    "iterations": 0,
    "early_stop": 0,
    "sigterm": 0,
    "sigint": 130,
    "nan": 3,
}


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: str  # completed | time | iterations | early_stop | sigterm | sigint | nan
    epochs_done: int
    best_val_top1: float
    test: dict[str, float] | None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)


class _Stopped(BaseException):  # not caught by a broad `except Exception` on the way
    """A signal during the final test evaluation, which has no step to check a flag at."""


class _Signals:
    """SIGINT/SIGTERM set a flag the loop checks after each step; a second Ctrl-C aborts.
    Inside :meth:`raising` (the final test) a signal raises :class:`_Stopped` instead."""

    def __init__(self) -> None:
        self.received = ""
        self.raise_now = False

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.received == "sigint" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = "sigterm" if signum == signal.SIGTERM else "sigint"
        if self.raise_now:
            raise _Stopped(self.received)

    @contextmanager
    def raising(self) -> Iterator[None]:
        self.raise_now = True
        try:
            yield
        finally:
            self.raise_now = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        try:
            old = {s: signal.signal(s, self.handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: no handlers, the run just cannot be paused
            yield
            return
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def fit(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    command: str | None = None,
) -> RunResult:
    """Train ``cfg`` (or continue the run saved at ``resume``) and return where it ended.

    ``command`` (the command line that started the run) is recorded in the report. Under
    ``torchrun`` every process calls this; each returns the same result.
    """
    with session(cfg.run.device) as group:
        return _fit(cfg, group, resume, command)


def _fit(
    cfg: TrainConfig, group: Group, resume: str | Path | None, command: str | None
) -> RunResult:
    check_budget(cfg)
    pretrained = resolve_pretrained(cfg)  # once: a local file is hashed, a name fetched
    cfg = resolve_pretrained_options(cfg, pretrained)  # before a resumed run's config is compared
    ckpt: Checkpoint | None = None
    if resume is None:
        check_out_dir(Path(cfg.run.out_dir).expanduser())
        run_dir = group.broadcast(new_run_dir(cfg))  # rank 0's: the default name holds the time
        # torchrun restarted the workers after a failure: continue this launch's run
        resume = group.broadcast(restart_point(run_dir) if group.is_main else None)
    if resume is not None:
        path = checkpoint_file(resume)
        ckpt = Checkpoint.load(path)  # every rank reads it: the folder must be shared
        check_resumable(cfg, ckpt, path)
        run_dir = path.parent  # a resumed run continues where its checkpoint lives
    with ExitStack() as owner:
        problem = ""
        if group.is_main:  # rank 0 writes the folder, so rank 0 owns it
            try:
                owner.enter_context(owned(run_dir, fresh=ckpt is None))
            except (ValueError, OSError) as err:
                problem = str(err)
        problem = group.broadcast(problem)  # every rank stops, not only rank 0
        if problem:
            raise ConfigError(problem)
        return _train(cfg, group, run_dir, ckpt, command, pretrained)


def _train(
    cfg: TrainConfig,
    group: Group,
    run_dir: Path,
    ckpt: Checkpoint | None,
    command: str | None,
    pretrained: PretrainedSource | None,
) -> RunResult:
    cfg, pipeline = resolve_pipeline(cfg)
    run = open_run(cfg, run_dir, group, pretrained)  # planned once, built once
    total = run.plan.total_steps
    if ckpt is not None and (done := finished_run(run_dir, ckpt, total, cfg.run.test)):
        log.info(done)  # a finished run resumed: its files stay as they are
        return RunResult(run_dir, "completed", ckpt.epoch, ckpt.best_val_top1, None)
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(run.plan.cfg, RunFolder(run_dir).config_file)  # as the data made it
        if ckpt is not None:  # epochs logged after the checkpoint are trained again
            truncate_metrics(run_dir, ckpt.epoch)
    if ckpt is not None:
        run.restore(ckpt)
    log.info(run.describe())
    if pipeline:
        log.info(pipeline)
    status = _epochs(run)
    if not group.is_main:
        return RunResult(run_dir, status, run.pos.epoch, run.pos.best_top1, None)
    signals = _Signals()
    with signals.installed():  # a signal now stops the test evaluation, not the process
        return _finish(run, status, command, signals)


def _epochs(run: Run) -> str:
    """Train epoch after epoch until the run ends; returns how it ended (see RunResult)."""
    cfg, group = run.plan.cfg, run.group
    signals = _Signals()
    limits = [m * 60 for m in (cfg.run.time_limit_min, cfg.run.budget_min) if m]
    limit_s = min(limits) if limits else None

    def should_stop() -> str:
        if signals.received:
            return signals.received
        if limit_s is not None and time.monotonic() - run.started > limit_s:
            return "time"
        return ""

    budgeted, fix_at = cfg.run.budget_min is not None, fixing_epoch(cfg)
    status = "completed"
    steps = StepLog(run.run_dir) if group.is_main else None
    metrics: AbstractContextManager[MetricsLogger | None] = (
        MetricsLogger(run.run_dir) if group.is_main else nullcontext()
    )
    with signals.installed(), metrics as logger:
        while run.pos.epoch < run.plan.max_epochs:
            epoch_started = time.monotonic()
            out, generator = run.train_epoch(should_stop, steps)
            if out.stopped == "nan":
                log.info(
                    f"stopped: the training loss became NaN/inf in epoch {run.pos.epoch + 1} "
                    f"(near step {out.step}); the last good checkpoint is "
                    f"{RunFolder(run.run_dir).last} (try a lower learning rate)"
                )
                status = "nan"
                break
            run.pos.step = out.step
            finished = run.pos.partial is not None and (
                run.pos.partial.batches_done >= run.plan.steps_per_epoch
            )
            if out.stopped in ("sigint", "sigterm") or (out.stopped == "time" and not finished):
                run.pause(out.stopped, generator)
                status = out.stopped
                break
            val_started = time.monotonic()
            val = run.validate()
            if budgeted and not run.plan.length_fixed and run.pos.epoch + 1 >= fix_at:
                now = time.monotonic()
                run.plan = _fix_to_budget(run, epoch_s=now - epoch_started, val_s=now - val_started)
            if run.close_epoch(out, val, logger):
                status = "early_stop"
                break
            if out.stopped == "time":
                status = "time"
                break
            if out.stopped == "iterations":  # the planned number of steps: a finished run
                break
    if steps is not None:
        steps.close()
    return status


def _fix_to_budget(run: Run, *, epoch_s: float, val_s: float) -> TrainPlan:
    """The run's plan with its length (epochs, steps) fixed to what fits its budget, the
    schedule's end with it; a resumed run keeps it (the schedule's ``length_fixed`` is in
    the checkpoint)."""
    plan = run.plan
    epochs, said = budget_epochs(
        plan.cfg,
        run.bundle,
        epochs_done=run.pos.epoch + 1,  # the epoch being closed
        elapsed_s=time.monotonic() - run.started,
        epoch_s=epoch_s,
        val_s=val_s,
        steps_per_epoch=plan.steps_per_epoch,
    )
    epochs = run.group.broadcast(epochs)  # under torchrun every rank takes rank 0's count
    plan = plan.with_length(epochs * plan.steps_per_epoch)
    run.parts.schedule.fix_length(plan.total_steps)
    log.info(said)
    return plan


def _finish(
    run: Run, status: str, command: str | None, signals: _Signals | None = None
) -> RunResult:
    """Curves, the one test evaluation (best checkpoint), results.json and report.md. A
    SIGTERM or Ctrl-C during the test stops it: results.json says so (no test figures) and
    ``--resume`` runs the test again (every epoch is in last.pt already)."""
    cfg, run_dir = run.plan.cfg, run.run_dir
    signals = signals or _Signals()
    rows = read_metrics(run_dir)
    if rows:
        plot_curves(rows, run_dir / "curves.png", title=f"{cfg.model.name}, {cfg.recipe} recipe")
    test = None
    stopped_early = status in ("nan", "sigint", "sigterm")
    if (
        not stopped_early
        and cfg.run.test
        and run.bundle.test is not None
        and RunFolder(run_dir).best.is_file()
    ):
        try:
            if signals.received:
                raise _Stopped(signals.received)
            with signals.raising():
                test = final_test(
                    run.parts.model, run.bundle, run.plan.pre, run.place, run_dir, cfg
                )
        except _Stopped as stop:
            status, test = str(stop), None
            log.info(
                f"{status}: stopped during the test evaluation, before any test figure was "
                f"written; every epoch is saved: `resnetlab train --resume {run_dir}` runs "
                "the test"
            )
    write_results(
        run_dir,
        cfg,
        run.bundle,
        run.place,
        status,
        run.pos.epoch,
        run.pos.best_top1,
        test,
        run.started,
        command,
    )
    return RunResult(run_dir, status, run.pos.epoch, run.pos.best_top1, test)
