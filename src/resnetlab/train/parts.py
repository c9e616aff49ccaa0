"""One training run, built once from its config: the data, the network, the optimiser and
schedule, the position; each part of ``fit`` (an epoch, validation, a checkpoint, a pause)
is a method of :class:`Run`.

Under ``torchrun`` every rank builds its own :class:`Run`; rank 0 alone writes files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from resnetlab.analysis.memory_estimate import check_memory
from resnetlab.data.datasets import eval_split_batches, on_device
from resnetlab.data.loaders import MIN_BATCH, BatchPlan, epoch_shape
from resnetlab.models.resnet import ResNet
from resnetlab.runtime.checkpoint import Checkpoint, CheckpointSaveError
from resnetlab.runtime.config import TrainConfig
from resnetlab.runtime.configured_data import load_run_data
from resnetlab.runtime.evaluate import evaluate
from resnetlab.runtime.execution import choose
from resnetlab.runtime.folder_layout import BEST, LAST
from resnetlab.runtime.group import Group
from resnetlab.train.build import (
    PretrainedSource,
    backbone_parameters,
    build_model,
    check_data_options,
    check_pretrained_fits,
    compiled_for_training,
    preprocess_for,
    say_unpretrained,
)
from resnetlab.train.distributed import fit_batches, scaled_lr, sync_batchnorm
from resnetlab.train.logs import MetricsLogger, StepLog
from resnetlab.train.loop import (
    EpochOutcome,
    EpochPlan,
    EpochState,
    LogPoint,
    TrainStep,
    train_one_epoch,
)
from resnetlab.train.optim import LRSchedule, build_ema, build_optimizer
from resnetlab.train.position import Position, best_value, early_stopping
from resnetlab.train.progress import epoch_bar, format_epoch
from resnetlab.train.snapshot import RunFacts, Trainable, restore, snapshot

log = logging.getLogger(__name__)


class Run:
    """Everything one run needs, built once; each step of ``fit`` is a method."""

    net: nn.Module  # what trains: the model, wrapped by DDP and compiled where asked

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        group: Group,
        pretrained: PretrainedSource | None = None,
    ) -> None:
        self.cfg, self.run_dir, self.group = cfg, run_dir, group
        self.pretrained = pretrained  # model.pretrained, resolved once by fit
        torch.manual_seed(cfg.run.seed)
        place = choose(cfg.run.device, cfg.run.precision, cfg.run.channels_last)
        self.place = replace(place, device=group.device(place.device))
        check_pretrained_fits(cfg, pretrained)  # before any data is decoded
        self._load_data()
        self._build_network()
        if group.rank > 0:  # dropout draws its own numbers on every rank
            torch.manual_seed(cfg.run.seed + 1_000_003 * group.rank)
        self._build_optimizer()
        self._plan()
        self.net = compiled_for_training(self.net, cfg, self.place.device, self.total_steps)
        fp16 = self.place.autocast is torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
        self.pos = Position()
        self.started = time.monotonic()

    def _load_data(self) -> None:
        group = self.group
        # Rank 0 decodes (and caches) the data first; the others then read its cache rather
        # than race it to write the same files.
        if not group.is_main:
            group.barrier()
        self.bundle = load_run_data(self.cfg)
        if group.is_main:
            group.barrier()
        self.cfg = fit_batches(self.cfg, len(self.bundle.train), group.size)
        check_data_options(self.cfg, self.bundle)
        say_unpretrained(self.cfg)
        if self.place.device.type == "cuda":  # keep small datasets resident on the GPU
            self.bundle = on_device(self.bundle, self.place.device)
        self.val = group.shard(self.bundle.val)  # validation is sharded, its sums all-reduced
        self.pre = preprocess_for(self.cfg, self.bundle, self.pretrained)

    def _build_network(self) -> None:
        cfg, group = self.cfg, self.group
        channels = self.bundle.train.image_size[0]
        model = build_model(
            cfg, len(self.bundle.classes), channels, self.pretrained, self.bundle.classes
        )
        if cfg.run.sync_bn and group.size > 1:
            model = sync_batchnorm(model, self.place.device)
        if self.place.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model.to(self.place.device)
        self.net = group.wrap(self.model, self.place.device)  # what trains (DDP under torchrun)

    def _build_optimizer(self) -> None:
        cfg, group = self.cfg, self.group
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.global_batch = cfg.data.batch_size * group.size
        self.lr = scaled_lr(
            cfg.optim.lr,
            batch_size=cfg.data.batch_size,
            world_size=group.size,
            reference=cfg.optim.reference_batch,
            enabled=cfg.run.scale_lr,
        )
        if self.lr != cfg.optim.lr:
            log.info(
                f"linear scaling rule: lr {cfg.optim.lr:g} × global batch {self.global_batch} "
                f"/ reference {cfg.optim.reference_batch} = {self.lr:g}"
            )
        backbone = None
        if cfg.model.pretrained and cfg.optim.backbone_lr_scale != 1.0:
            backbone = backbone_parameters(self.model, cfg.model.name)
            log.info(
                f"discriminative lr: the pretrained backbone at lr × "
                f"{cfg.optim.backbone_lr_scale:g}, the head at lr"
            )
        self.optimizer = build_optimizer(
            params, replace(cfg.optim, lr=self.lr), device=self.place.device, backbone=backbone
        )
        # With optim.ema_decay the average is the model: validated, selected and saved.
        self.ema = build_ema(self.model, cfg.optim.ema_decay)

    def _plan(self) -> None:
        """The run's length in steps and epochs, its schedule; memory checked first."""
        cfg = self.cfg
        keep = cfg.data.last_batch == "keep"
        shape = epoch_shape(len(self.bundle.train), cfg.data.batch_size, self.group.size, keep)
        self.steps_per_epoch = shape.steps
        if shape.dropped and keep:  # data.last_batch: drop (earlier code's way) is silent
            log.info(
                f"each epoch leaves out {shape.dropped} of the {len(self.bundle.train)} "
                f"training images (a last batch under {MIN_BATCH} images a process: BatchNorm "
                "needs 2); a different shuffle each epoch"
            )
        # Checked before the first batch is made at that size.
        side, channels = self.pre.image_size, self.bundle.train.image_size[0]
        step = (cfg.data.batch_size, channels, side, side)
        hint = "use a smaller --batch-size or --image-size"
        check_memory(self.model, step, training=True, device=self.place.device, hint=hint)
        # Validation and the final test run at data.eval_batch_size (their whole split at most).
        test = self.bundle.test if cfg.run.test else None
        split = max((len(s) for s in (self.val, test) if s is not None), default=1)
        step = (min(cfg.data.eval_batch_size, split), channels, side, side)
        hint = "it runs at data.eval_batch_size: lower it with --set data.eval_batch_size=N"
        dev = self.place.device
        check_memory(self.model, step, training=False, device=dev, hint=hint, what="validation")
        # The run ends at the first of: the iteration budget, the epoch budget.
        planned = [cfg.run.iterations, (cfg.run.epochs or 0) * self.steps_per_epoch]
        self.total_steps = min([v for v in planned if v] or [10**12])
        self.max_epochs = -(-self.total_steps // self.steps_per_epoch)
        warm = cfg.schedule.warmup_lr  # the paper's 0.01 scales with the lr it precedes
        warm = None if warm is None else warm * self.lr / cfg.optim.lr
        self.schedule = LRSchedule(
            self.optimizer,
            replace(cfg.schedule, warmup_lr=warm),
            base_lr=self.lr,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            model_depth=self.model.spec.depth if isinstance(self.model, ResNet) else 0,
        )

    # ------------------------------------------------------------ checkpoints
    def restore(self, ckpt: Checkpoint) -> None:
        self.pos = restore(self.parts, ckpt, self.group, self.place.device, self.run_dir)
        if self.schedule.length_fixed:  # a time budget's length; else the config's plan
            self.set_length(self.schedule.total_steps)
        # Wall time and the time limit count every session of the run.
        self.started = time.monotonic() - ckpt.elapsed_s
        log.info(f"resuming {self.run_dir} at epoch {self.pos.epoch + 1}, step {self.pos.step}")

    def snapshot(self, generator: torch.Tensor | None = None) -> Checkpoint:
        """The checkpoint of the current position (``generator``: paused mid-epoch)."""
        b = self.bundle
        facts = RunFacts(self.cfg, tuple(b.classes), self.pre, b.train.image_size, self.started)
        return snapshot(self.parts, self.pos, facts, self.group, self.place.device, generator)

    @property
    def parts(self) -> Trainable:
        return Trainable(self.model, self.optimizer, self.schedule, self.ema, self.scaler)

    def set_length(self, total_steps: int) -> None:
        """The run's length in steps (a time budget fixes it after the warm-up)."""
        self.total_steps = self.schedule.total_steps = total_steps
        self.max_epochs = -(-total_steps // self.steps_per_epoch)

    @property
    def eval_model(self) -> nn.Module:
        """What is validated, tested and saved as the model (see :class:`Trainable`)."""
        return self.parts.eval_model

    # ------------------------------------------------------------ one epoch
    def train_epoch(
        self, should_stop: Callable[[], str], steps: StepLog | None = None
    ) -> tuple[EpochOutcome, torch.Tensor]:
        """Train (the rest of) the current epoch; returns the outcome and the augmentation
        generator's state (to pause mid-epoch)."""
        pos, cfg, g = self.pos, self.cfg, self.group
        if pos.partial is None:
            pos.partial = EpochState.fresh(self.place.device)
        plan = BatchPlan(
            cfg.data.batch_size,
            cfg.run.seed,
            pos.epoch,
            start_batch=pos.partial.batches_done,
            generator_state=pos.generator,
            rank=g.rank,
            world_size=g.size,
            keep_last=cfg.data.last_batch == "keep",
        )
        batches = self.bundle.train.train_batches(self.pre, plan, self.place.device)
        epoch = pos.epoch + 1
        bar = epoch_bar(
            self.steps_per_epoch,
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

        parts = TrainStep(
            self.net,
            self.optimizer,
            self.schedule,
            self.loss_fn,
            self.place,
            scaler=self.scaler,
            ema=self.ema,
            group=g,
        )
        out = train_one_epoch(
            parts,
            batches,
            state=pos.partial,
            step=pos.step,
            plan=EpochPlan(self.steps_per_epoch, self.total_steps, cfg.run.log_every),
            should_stop=should_stop,
            on_log=on_log,
        )
        bar.close()
        return out, batches.generator_state()

    def validate(self) -> dict[str, float]:
        """Every rank evaluates its shard of the validation split with rank 0's BN
        statistics (those the checkpoint keeps); the sums are all-reduced. Views:
        ``run.tta``, as in the final test."""
        self.group.share_buffers(self.eval_model)
        batches = eval_split_batches(
            self.val, self.pre, device=self.place.device, batch_size=self.cfg.data.eval_batch_size
        )
        return evaluate(
            self.eval_model,
            batches,
            place=self.place,
            loss_fn=self.loss_fn,
            group=self.group,
            tta=self.cfg.run.tta,
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
        pos, cfg = self.pos, self.cfg
        pos.epoch += 1
        row: dict[str, float | int | str] = {
            "epoch": pos.epoch,
            "epochs": self.max_epochs,
            "step": pos.step,
            **out.metrics,
            "val_loss": val["loss"],
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "epoch_time_s": out.metrics["train_time_s"],
        }
        if len(self.bundle.classes) <= 5:  # top-5 of 5 classes or fewer: always 100%
            del row["val_top5"]
        if logger is not None:
            logger.log(row)
        log.info(format_epoch(row))
        watched = {"val_loss": val["loss"], "val_top1": val["top1"]}
        self.schedule.epoch_end(watched)
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
            f"batch {done}/{self.steps_per_epoch}; continue with "
            f"`resnetlab train --resume {self.run_dir}`"
        )

    def describe(self) -> str:
        b, place, g = self.bundle, self.place, self.group
        budget, fixed = self.cfg.run.budget_min, self.schedule.length_fixed
        if g.size > 1:
            batch = f"{g.size} processes × batch {self.cfg.data.batch_size} = {self.global_batch}"
            batch += " (SyncBN)" if self.cfg.run.sync_bn else ""
        else:
            batch = f"batch {self.global_batch}"
        test = len(b.test) if b.test is not None else 0
        return (
            f"run {self.run_dir}: {self.cfg.model.name} on {b.source}; train {len(b.train):,}, "
            f"val {len(b.val):,} ({b.val_note}), test {test:,}; {place.device} {place.precision}"
            f"{' channels_last' if place.channels_last else ''}; {batch}, lr {self.lr:g}; "
            f"{self.steps_per_epoch} steps/epoch, up to {self.max_epochs} epochs"
            + (f" (until a {budget:g}-min budget fixes it)" if budget and not fixed else "")
        )
