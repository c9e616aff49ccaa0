"""A run's training state to and from a :class:`~resnetlab.runtime.checkpoint.Checkpoint`:
:func:`snapshot` takes the checkpoint of a position, :func:`restore` puts one back and
returns the position. Under ``torchrun`` every rank calls both (the running sums and each
rank's random streams are gathered); rank 0 alone writes the file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from resnetlab.data.augment import Preprocess
from resnetlab.runtime.checkpoint import Checkpoint
from resnetlab.runtime.config import ConfigError, TrainConfig
from resnetlab.runtime.group import Group
from resnetlab.train.optim import LRSchedule
from resnetlab.train.position import (
    Position,
    restore_partial,
    rng_state,
    saved_partial,
    set_rng_state,
)


@dataclass(frozen=True)
class Trainable:
    """What a checkpoint keeps of the parts that train: the model (not DDP-wrapped, not
    compiled), its optimiser and schedule, the weight average and the fp16 loss scaler."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    ema: AveragedModel | None = None
    scaler: torch.amp.GradScaler | None = None

    @property
    def eval_model(self) -> nn.Module:
        """What is validated, tested and saved as the model: the weight average if there is
        one, else the trained weights."""
        return self.model if self.ema is None else self.ema.module


@dataclass(frozen=True)
class RunFacts:
    """What a checkpoint records of the run beside its state: the config, the classes, the
    pipeline, the stored image size and when the run started (``time.monotonic()``, earlier
    sessions included)."""

    cfg: TrainConfig
    classes: tuple[str, ...]
    pipeline: Preprocess
    data_size: tuple[int, int, int]
    started: float


def snapshot(
    parts: Trainable,
    pos: Position,
    facts: RunFacts,
    group: Group,
    device: torch.device,
    generator: torch.Tensor | None = None,
) -> Checkpoint:
    """The checkpoint of ``pos`` (``generator``: the augmentation stream of an epoch paused
    midway)."""
    partial = None
    if generator is not None and pos.partial is not None:
        partial = saved_partial(pos.partial, group, device, generator)
    ranks = None
    if group.size > 1:  # each rank's own random streams, to resume each exactly
        ranks = group.gather({"rng": rng_state(), "generator": generator})
    ema = parts.ema
    return Checkpoint(
        model=parts.eval_model.state_dict(),
        train_model=parts.model.state_dict() if ema is not None else None,
        ema_updates=int(ema.n_averaged) if ema is not None else None,
        optimizer=parts.optimizer.state_dict(),
        schedule=parts.schedule.state_dict(),
        scaler=parts.scaler.state_dict() if parts.scaler is not None else None,
        rng=rng_state(),
        epoch=pos.epoch,
        step=pos.step,
        best=pos.best,
        bad_epochs=pos.bad_epochs,
        best_val_top1=pos.best_top1,
        partial=partial,
        config=facts.cfg,
        classes=facts.classes,
        preprocess=facts.pipeline,
        data_size=facts.data_size,
        model_name=facts.cfg.model.name,
        elapsed_s=time.monotonic() - facts.started,
        world_size=group.size,
        ranks=ranks,
    )


def restore(
    parts: Trainable, ckpt: Checkpoint, group: Group, device: torch.device, run_dir: Path
) -> Position:
    """Load ``ckpt``'s state into ``parts`` and the random streams; returns its position."""
    if ckpt.world_size != group.size:
        raise ConfigError(
            f"{run_dir} was trained by {ckpt.world_size} process(es): resume it with as many "
            f"(the global batch and the position in the epoch depend on it), not {group.size}"
        )
    if parts.ema is not None:  # "model" holds the average, "train_model" what trains
        assert ckpt.train_model is not None
        assert ckpt.ema_updates is not None
        parts.model.load_state_dict(ckpt.train_model)
        parts.ema.module.load_state_dict(ckpt.model)
        parts.ema.n_averaged.fill_(int(ckpt.ema_updates))
    else:
        parts.model.load_state_dict(ckpt.model)
    assert ckpt.optimizer is not None
    assert ckpt.schedule is not None
    parts.optimizer.load_state_dict(ckpt.optimizer)
    parts.schedule.load_state_dict(ckpt.schedule)
    if parts.scaler is not None and ckpt.scaler:
        parts.scaler.load_state_dict(ckpt.scaler)
    mine = ckpt.ranks[group.rank] if group.size > 1 and ckpt.ranks else None
    rng = mine["rng"] if mine else ckpt.rng
    assert rng is not None
    set_rng_state(rng)
    pos = Position(ckpt.epoch, ckpt.step, ckpt.best, ckpt.bad_epochs, ckpt.best_val_top1)
    if ckpt.partial is not None:
        # The saved sums are global: rank 0 carries them on alone.
        pos.partial = restore_partial(ckpt.partial, device, keep_sums=group.is_main)
        pos.generator = mine["generator"] if mine else ckpt.partial["generator"]
    return pos
