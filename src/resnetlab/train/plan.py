"""A run's plan, made once (:func:`make_plan`) from the config, the data's facts, the
group's size and the pretrained weights: the config as the data makes it, the
preprocessing, the batch and learning rate, the run's length in steps and epochs and the
schedule's settings. The plan is frozen: a time budget fixing the length makes a new one
(:meth:`TrainPlan.with_length`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from resnetlab.data.augment import Preprocess
from resnetlab.data.datasets import DataBundle
from resnetlab.data.loaders import epoch_shape
from resnetlab.runtime.config import ScheduleConfig, TrainConfig
from resnetlab.train.build import (
    PretrainedSource,
    check_data_options,
    preprocess_for,
    say_unpretrained,
)
from resnetlab.train.distributed import fit_batches, scaled_lr

UNBOUNDED = 10**12  # neither run.iterations nor run.epochs: the run ends another way


@dataclass(frozen=True)
class TrainPlan:
    """Everything decided before the first step (see :func:`make_plan`)."""

    cfg: TrainConfig  # after fit_batches: config.yaml and checkpoints say this one
    pre: Preprocess
    train_size: int  # training images
    data_size: tuple[int, int, int]  # the stored images: channels, height, width
    world_size: int
    global_batch: int
    lr: float  # after the linear scaling rule (run.scale_lr)
    schedule: ScheduleConfig  # its warm-up lr scaled with the lr
    steps_per_epoch: int
    dropped: int  # training images each epoch leaves out (data.last_batch)
    total_steps: int
    length_fixed: bool = False  # a time budget fixed total_steps

    @property
    def channels(self) -> int:
        return self.data_size[0]

    @property
    def max_epochs(self) -> int:
        """Epochs the run starts, the last one maybe cut short by ``total_steps``."""
        return -(-self.total_steps // self.steps_per_epoch)

    @property
    def keep_last(self) -> bool:
        return self.cfg.data.last_batch == "keep"

    def with_length(self, total_steps: int) -> TrainPlan:
        """This plan with the length a time budget fixed (``total_steps``)."""
        return replace(self, total_steps=total_steps, length_fixed=True)


def make_plan(
    cfg: TrainConfig,
    bundle: DataBundle,
    world_size: int,
    pretrained: PretrainedSource | None,
) -> TrainPlan:
    """The plan of a run of ``cfg`` on ``bundle`` in a group of ``world_size`` processes;
    ``pretrained``: ``model.pretrained`` resolved. Refuses (in one line) model options and
    preprocessing the data contradicts; logs the per-rank batch and a recipe that expects
    pretrained weights."""
    train_size = len(bundle.train)
    cfg = fit_batches(cfg, train_size, world_size)
    check_data_options(cfg, bundle)
    say_unpretrained(cfg)
    pre = preprocess_for(cfg, bundle, pretrained)
    batch = cfg.data.batch_size
    lr = scaled_lr(
        cfg.optim.lr,
        batch_size=batch,
        world_size=world_size,
        reference=cfg.optim.reference_batch,
        enabled=cfg.run.scale_lr,
    )
    keep = cfg.data.last_batch == "keep"
    shape = epoch_shape(train_size, batch, world_size, keep)
    # The run ends at the first of: the iteration budget, the epoch budget.
    planned = [cfg.run.iterations, (cfg.run.epochs or 0) * shape.steps]
    total_steps = min([v for v in planned if v] or [UNBOUNDED])
    warm = cfg.schedule.warmup_lr  # the paper's 0.01 scales with the lr it precedes
    warm = None if warm is None else warm * lr / cfg.optim.lr
    return TrainPlan(
        cfg=cfg,
        pre=pre,
        train_size=train_size,
        data_size=bundle.train.image_size,
        world_size=world_size,
        global_batch=batch * world_size,
        lr=lr,
        schedule=replace(cfg.schedule, warmup_lr=warm),
        steps_per_epoch=shape.steps,
        dropped=shape.dropped,
        total_steps=total_steps,
    )
