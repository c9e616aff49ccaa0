"""A run's data (:func:`load_data`) and its parts, built once from its plan
(:func:`build_parts`): the network (wrapped by DDP and compiled where asked), its
optimiser, weight average, schedule, fp16 loss scaler and loss. The memory the first
batch and validation will take is checked here, before either is made."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from resnetlab.analysis.memory_estimate import check_memory
from resnetlab.data.datasets import DataBundle
from resnetlab.data.loaders import MIN_BATCH
from resnetlab.data.tensors import Split
from resnetlab.models.resnet import ResNet
from resnetlab.runtime.config import TrainConfig
from resnetlab.runtime.configured_data import load_run_data
from resnetlab.runtime.execution import Execution
from resnetlab.runtime.group import Group
from resnetlab.train.build import (
    PretrainedSource,
    backbone_parameters,
    build_model,
    compiled_for_training,
)
from resnetlab.train.distributed import sync_batchnorm
from resnetlab.train.optim import LRSchedule, build_ema, build_optimizer
from resnetlab.train.plan import TrainPlan
from resnetlab.train.snapshot import Trainable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    """What trains: ``model`` (plain, what checkpoints hold) and ``net`` (the same model
    wrapped by DDP under torchrun and compiled where asked), with everything that steps it."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    ema: AveragedModel | None
    scaler: torch.amp.GradScaler | None
    loss_fn: nn.Module

    @property
    def trainable(self) -> Trainable:
        """What a checkpoint keeps of them."""
        return Trainable(self.model, self.optimizer, self.schedule, self.ema, self.scaler)

    @property
    def eval_model(self) -> nn.Module:
        """What is validated, tested and saved as the model (see :class:`Trainable`)."""
        return self.trainable.eval_model


def load_data(cfg: TrainConfig, group: Group) -> DataBundle:
    """The run's data. Rank 0 decodes (and caches) it first; the others then read its
    cache rather than race it to write the same files."""
    if not group.is_main:
        group.barrier()
    bundle = load_run_data(cfg)
    if group.is_main:
        group.barrier()
    return bundle


def build_parts(
    plan: TrainPlan,
    bundle: DataBundle,
    val: Split,
    group: Group,
    place: Execution,
    pretrained: PretrainedSource | None,
) -> Parts:
    """The parts of a run of ``plan`` on ``bundle`` (``val``: this rank's validation shard).
    The order of what draws random numbers (the model, then each rank's own seed, then the
    optimiser) is the one every checkpoint was made with: a resumed run stays exact."""
    cfg = plan.cfg
    model = _network(plan, bundle, group, place, pretrained)
    net = group.wrap(model, place.device)  # what trains (DDP under torchrun)
    if group.rank > 0:  # dropout draws its own numbers on every rank
        torch.manual_seed(cfg.run.seed + 1_000_003 * group.rank)
    optimizer = _optimizer(plan, model, place)
    # With optim.ema_decay the average is the model: validated, selected and saved.
    ema = build_ema(model, cfg.optim.ema_decay)
    if plan.dropped and plan.keep_last:  # data.last_batch: drop (earlier code's way) is silent
        log.info(
            f"each epoch leaves out {plan.dropped} of the {plan.train_size} "
            f"training images (a last batch under {MIN_BATCH} images a process: BatchNorm "
            "needs 2); a different shuffle each epoch"
        )
    _check_memory(plan, model, val, bundle.test if cfg.run.test else None, place)
    schedule = LRSchedule(
        optimizer,
        plan.schedule,
        base_lr=plan.lr,
        steps_per_epoch=plan.steps_per_epoch,
        total_steps=plan.total_steps,
        model_depth=model.spec.depth if isinstance(model, ResNet) else 0,
    )
    net = compiled_for_training(net, cfg, place.device, plan.total_steps)
    fp16 = place.autocast is torch.float16
    return Parts(
        model=model,
        net=net,
        optimizer=optimizer,
        schedule=schedule,
        ema=ema,
        scaler=torch.amp.GradScaler("cuda") if fp16 else None,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing),
    )


def _network(
    plan: TrainPlan,
    bundle: DataBundle,
    group: Group,
    place: Execution,
    pretrained: PretrainedSource | None,
) -> nn.Module:
    """The model on its device: SyncBN under torchrun where asked, channels_last."""
    cfg = plan.cfg
    model = build_model(cfg, len(bundle.classes), plan.channels, pretrained, bundle.classes)
    if cfg.run.sync_bn and group.size > 1:
        model = sync_batchnorm(model, place.device)
    if place.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model.to(place.device)


def _optimizer(plan: TrainPlan, model: nn.Module, place: Execution) -> torch.optim.Optimizer:
    """The optimiser at the plan's lr (a pretrained backbone slower where asked)."""
    cfg = plan.cfg
    params = [p for p in model.parameters() if p.requires_grad]
    if plan.lr != cfg.optim.lr:
        log.info(
            f"linear scaling rule: lr {cfg.optim.lr:g} × global batch {plan.global_batch} "
            f"/ reference {cfg.optim.reference_batch} = {plan.lr:g}"
        )
    backbone = None
    if cfg.model.pretrained and cfg.optim.backbone_lr_scale != 1.0:
        backbone = backbone_parameters(model, cfg.model.name)
        log.info(
            f"discriminative lr: the pretrained backbone at lr × "
            f"{cfg.optim.backbone_lr_scale:g}, the head at lr"
        )
    optim = replace(cfg.optim, lr=plan.lr)
    return build_optimizer(params, optim, device=place.device, backbone=backbone)


def _check_memory(
    plan: TrainPlan, model: nn.Module, val: Split, test: Split | None, place: Execution
) -> None:
    """Refuse (in one line) a training batch or a validation batch that will not fit;
    checked before the first batch is made at that size."""
    cfg, side, channels = plan.cfg, plan.pre.image_size, plan.channels
    step = (cfg.data.batch_size, channels, side, side)
    hint = "use a smaller --batch-size or --image-size"
    check_memory(model, step, training=True, device=place.device, hint=hint)
    # Validation and the final test run at data.eval_batch_size (their whole split at most).
    split = max((len(s) for s in (val, test) if s is not None), default=1)
    step = (min(cfg.data.eval_batch_size, split), channels, side, side)
    hint = "it runs at data.eval_batch_size: lower it with --set data.eval_batch_size=N"
    dev = place.device
    check_memory(model, step, training=False, device=dev, hint=hint, what="validation")
