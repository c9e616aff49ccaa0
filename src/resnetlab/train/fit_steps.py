"""One training run: its plan, its parts and its position (:func:`open_run` builds them
once); each step of ``fit`` (an epoch, validation, a checkpoint, a pause) is a method of
:class:`Run`.

Under ``torchrun`` every rank opens its own :class:`Run`; rank 0 alone writes files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from resnetlab.data.datasets import DataBundle, eval_split_batches, on_device
from resnetlab.data.loaders import BatchPlan
from resnetlab.data.tensors import Split
from resnetlab.runtime.checkpoint import Checkpoint, CheckpointSaveError
from resnetlab.runtime.config import TrainConfig
from resnetlab.runtime.evaluate import evaluate
from resnetlab.runtime.execution import Execution, choose
from resnetlab.runtime.folder_layout import BEST, LAST
from resnetlab.runtime.group import Group
from resnetlab.runtime.metrics import top5_shown
from resnetlab.train.build import PretrainedSource, check_pretrained_fits
from resnetlab.train.logs import MetricsLogger, StepLog
from resnetlab.train.loop import (
    EpochOutcome,
    EpochPlan,
    EpochState,
    LogPoint,
    TrainStep,
    train_one_epoch,
)
from resnetlab.train.parts import Parts, build_parts, load_data
from resnetlab.train.plan import TrainPlan, make_plan
from resnetlab.train.position import Position, best_value, early_stopping
from resnetlab.train.progress import epoch_bar, format_epoch
from resnetlab.train.snapshot import RunFacts, restore, snapshot

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A run's plan (replaced, never changed, where a time budget fixes the length), its
    parts and where it stands; each step of ``fit`` is a method."""

    run_dir: Path
    group: Group
    place: Execution
    bundle: DataBundle
    val: Split  # this rank's shard: validation is sharded, its sums all-reduced
    plan: TrainPlan
    parts: Parts
    pos: Position = field(default_factory=Position)
    started: float = field(default_factory=time.monotonic)

    # ------------------------------------------------------------ checkpoints
    def restore(self, ckpt: Checkpoint) -> None:
        self.pos = restore(self.parts.trainable, ckpt, self.group, self.place.device, self.run_dir)
        schedule = self.parts.schedule
        if schedule.length_fixed:  # a time budget's length; else the config's plan
            self.plan = self.plan.with_length(schedule.total_steps)
        # Wall time and the time limit count every session of the run.
        self.started = time.monotonic() - ckpt.elapsed_s
        log.info(f"resuming {self.run_dir} at epoch {self.pos.epoch + 1}, step {self.pos.step}")

    def snapshot(self, generator: torch.Tensor | None = None) -> Checkpoint:
        """The checkpoint of the current position (``generator``: paused mid-epoch)."""
        b, p = self.bundle, self.plan
        facts = RunFacts(p.cfg, tuple(b.classes), p.pre, b.train.image_size, self.started)
        trainable = self.parts.trainable
        return snapshot(trainable, self.pos, facts, self.group, self.place.device, generator)

    # ------------------------------------------------------------ one epoch
    def train_epoch(
        self, should_stop: Callable[[], str], steps: StepLog | None = None
    ) -> tuple[EpochOutcome, torch.Tensor]:
        """Train (the rest of) the current epoch; returns the outcome and the augmentation
        generator's state (to pause mid-epoch)."""
        pos, plan, cfg, g = self.pos, self.plan, self.plan.cfg, self.group
        if pos.partial is None:
            pos.partial = EpochState.fresh(self.place.device)
        order = BatchPlan(
            cfg.data.batch_size,
            cfg.run.seed,
            pos.epoch,
            start_batch=pos.partial.batches_done,
            generator_state=pos.generator,
            rank=g.rank,
            world_size=g.size,
            keep_last=plan.keep_last,
        )
        batches = self.bundle.train.train_batches(plan.pre, order, self.place.device)
        epoch = pos.epoch + 1
        bar = epoch_bar(
            plan.steps_per_epoch,
            desc=f"epoch {epoch}",
            initial=pos.partial.batches_done,
            enabled=None if g.is_main else False,
        )

        def on_log(point: LogPoint) -> None:
            if steps is not None and point.window_loss is not None:
                assert point.window_error is not None
                steps.log(point.step, epoch, point.window_loss, point.window_error)
            bar.set_postfix(loss=point.loss, top1=point.top1, lr=point.lr, refresh=False)
            bar.update(point.batches_done - bar.n)

        p = self.parts
        step = TrainStep(
            p.net,
            p.optimizer,
            p.schedule,
            p.loss_fn,
            self.place,
            scaler=p.scaler,
            ema=p.ema,
            group=g,
        )
        out = train_one_epoch(
            step,
            batches,
            state=pos.partial,
            step=pos.step,
            plan=EpochPlan(plan.steps_per_epoch, plan.total_steps, cfg.run.log_every),
            should_stop=should_stop,
            on_log=on_log,
        )
        bar.close()
        return out, batches.generator_state()

    def validate(self) -> dict[str, float]:
        """Every rank evaluates its shard of the validation split with rank 0's BN
        statistics (those the checkpoint keeps); the sums are all-reduced. Views:
        ``run.tta``, as in the final test."""
        cfg, model = self.plan.cfg, self.parts.eval_model
        self.group.share_buffers(model)
        batches = eval_split_batches(
            self.val, self.plan.pre, device=self.place.device, batch_size=cfg.data.eval_batch_size
        )
        return evaluate(
            model,
            batches,
            place=self.place,
            loss_fn=self.parts.loss_fn,
            group=self.group,
            tta=cfg.run.tta,
        )

    def save(self, ckpt: Checkpoint, *names: str) -> None:
        """Rank 0 writes (``best.pt`` before ``last.pt``: if the second save fails, the run
        resumes before this epoch and saves both again); every rank learns whether it
        worked, so a failed save stops all of them."""
        failure: CheckpointSaveError | None = None
        if self.group.is_main:
            try:
                for name in sorted(names, key=lambda n: n != BEST):
                    ckpt.save(self.run_dir / name)
            except CheckpointSaveError as err:
                failure = err
        message = self.group.broadcast(str(failure) if failure is not None else "")
        if failure is not None:
            raise failure
        if message:
            raise CheckpointSaveError(message)

    def close_epoch(
        self, out: EpochOutcome, val: dict[str, float], logger: MetricsLogger | None
    ) -> str:
        """Log the epoch, update the best/patience bookkeeping, save ``last.pt`` (and
        ``best.pt`` on a better validation top-1); returns "early_stop" or ""."""
        pos, cfg = self.pos, self.plan.cfg
        pos.epoch += 1
        row: dict[str, float | int | str] = {
            "epoch": pos.epoch,
            "epochs": self.plan.max_epochs,
            "step": pos.step,
            **out.metrics,
            "val_loss": val["loss"],
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "epoch_time_s": out.metrics["train_time_s"],
        }
        if not top5_shown(len(self.bundle.classes)):
            del row["val_top5"]
        if logger is not None:
            logger.log(row)
        log.info(format_epoch(row))
        watched = {"val_loss": val["loss"], "val_top1": val["top1"]}
        self.parts.schedule.epoch_end(watched)
        patience = cfg.run.early_stopping_patience
        value = best_value(watched, cfg.run.early_stopping_metric)
        pos.best, pos.bad_epochs, stop = early_stopping(pos.best, pos.bad_epochs, value, patience)
        improved = val["top1"] > pos.best_top1
        pos.best_top1 = max(pos.best_top1, val["top1"])
        pos.partial, pos.generator = None, None
        self.save(self.snapshot(), LAST, *([BEST] if improved else []))
        if stop:
            metric = cfg.run.early_stopping_metric
            log.info(f"early stopping: no better {metric} for {patience} epochs")
            return "early_stop"
        return ""

    def pause(self, reason: str, generator: torch.Tensor) -> None:
        """Save the position inside the current epoch (signal or time limit)."""
        self.save(self.snapshot(generator), LAST)
        done = self.pos.partial.batches_done if self.pos.partial is not None else 0
        log.info(
            f"{reason}: saved {self.run_dir / LAST} at epoch {self.pos.epoch + 1}, "
            f"batch {done}/{self.plan.steps_per_epoch}; continue with "
            f"`resnetlab train --resume {self.run_dir}`"
        )

    def describe(self) -> str:
        b, place, g, p = self.bundle, self.place, self.group, self.plan
        budget, fixed = p.cfg.run.budget_min, p.length_fixed
        if g.size > 1:
            batch = f"{g.size} processes × batch {p.cfg.data.batch_size} = {p.global_batch}"
            batch += " (SyncBN)" if p.cfg.run.sync_bn else ""
        else:
            batch = f"batch {p.global_batch}"
        test = len(b.test) if b.test is not None else 0
        return (
            f"run {self.run_dir}: {p.cfg.model.name} on {b.source}; train {len(b.train):,}, "
            f"val {len(b.val):,} ({b.val_note}), test {test:,}; {place.device} {place.precision}"
            f"{' channels_last' if place.channels_last else ''}; {batch}, lr {p.lr:g}; "
            f"{p.steps_per_epoch} steps/epoch, up to {p.max_epochs} epochs"
            + (f" (until a {budget:g}-min budget fixes it)" if budget and not fixed else "")
        )


def open_run(
    cfg: TrainConfig, run_dir: Path, group: Group, pretrained: PretrainedSource | None
) -> Run:
    """Plan the run of ``cfg`` once and build its parts once (``pretrained``:
    ``model.pretrained`` resolved). The seed comes first: the model's initial weights are
    the seed's."""
    torch.manual_seed(cfg.run.seed)
    place = choose(cfg.run.device, cfg.run.precision, cfg.run.channels_last)
    place = replace(place, device=group.device(place.device))
    check_pretrained_fits(cfg, pretrained)  # before any data is decoded
    bundle = load_data(cfg, group)
    plan = make_plan(cfg, bundle, group.size, pretrained)
    if place.device.type == "cuda":  # keep small datasets resident on the GPU
        bundle = on_device(bundle, place.device)
    val = group.shard(bundle.val)
    parts = build_parts(plan, bundle, val, group, place, pretrained)
    return Run(run_dir, group, place, bundle, val, plan, parts)
