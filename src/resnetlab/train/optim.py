"""Optimisers and learning-rate schedules.

The schedule is our own small class rather than a ``torch.optim.lr_scheduler``: its state
is a few numbers (so checkpoints load with ``weights_only=True``), it can follow either
steps or epochs, and it implements the paper's warm-up rule for ResNet-110/1202 (0.01
until the training error falls below 80%, §4.2).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from resnetlab.runtime.config import OptimConfig, ScheduleConfig


def build_optimizer(
    params: list[nn.Parameter],
    cfg: OptimConfig,
    *,
    device: torch.device,
    backbone: list[nn.Parameter] | None = None,
) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or Adam/AdamW, with the fused/foreach
    implementation where the device has one. Weight decay applies to every parameter,
    as in the paper, unless ``cfg.norm_bias_decay`` sets another for BN weights and biases;
    the ``backbone`` parameters among ``params`` train at ``cfg.backbone_lr_scale`` × lr
    (see :func:`param_groups`)."""
    # The fused kernel (one pass over every parameter) where torch has one for the device:
    # on a 2-core Xeon it made a ResNet-20 step 7% faster than foreach (benchmarks/train_step.py
    # --fused); elsewhere the foreach implementation.
    fast: dict[str, Any] = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    groups = param_groups(params, cfg, backbone=backbone)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
            **fast,
        )
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fast)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fast)


def param_groups(
    params: list[nn.Parameter],
    cfg: OptimConfig,
    *,
    backbone: list[nn.Parameter] | None = None,
) -> list[nn.Parameter] | list[dict[str, Any]]:
    """``params`` as one group (``norm_bias_decay`` None: the paper's decay everywhere), or
    two: conv/linear weights with ``weight_decay``, and the one-dimensional tensors (BN
    scales and shifts, biases) with ``norm_bias_decay``. Decay on those does not regularise
    anything a BN net can express: it only rescales what the next BN normalises away, and
    pulls BN's γ toward zero (Goyal et al. 2017 §5.1 leave it off; timm and torchvision's
    recipes too). A single group keeps old optimiser states loadable.

    With ``backbone`` given and ``cfg.backbone_lr_scale`` ≠ 1, each of those groups splits
    again: the backbone's parameters carry ``lr_scale`` (the schedule sets their lr to
    lr × it, every step), the head's train at lr. Pretrained features need only small
    changes, and a full lr on them would undo in the first steps, while the fresh head's
    gradients are still large and random, what pretraining learnt."""
    scale = cfg.backbone_lr_scale
    if backbone is None or scale == 1.0:
        return params if cfg.norm_bias_decay is None else _decay_groups(params, cfg)
    in_backbone = {id(p) for p in backbone}
    parts = (
        ([p for p in params if id(p) in in_backbone], scale),
        ([p for p in params if id(p) not in in_backbone], 1.0),
    )
    return [
        {**group, "lr": cfg.lr * lr_scale, "lr_scale": lr_scale}
        for part, lr_scale in parts
        for group in _decay_groups(part, cfg)
        if group["params"]
    ]


def _decay_groups(params: list[nn.Parameter], cfg: OptimConfig) -> list[dict[str, Any]]:
    if cfg.norm_bias_decay is None:
        return [{"params": params, "weight_decay": cfg.weight_decay}]
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": cfg.norm_bias_decay},
    ]


def ema_decay_at(decay: float, updates: int) -> float:
    """The decay of the average's update number ``updates + 1``: ``decay``, but no more than
    ``(1 + updates) / (10 + updates)`` (TensorFlow's ``ExponentialMovingAverage`` with
    ``num_updates``), so that the first steps' weights, which are nearly the random start, do
    not linger in the average: at decay 0.998 a fixed rate still keeps 4% of the step-1 weights
    after 1,600 steps (a 9-epoch run), the warmed-up one about 0.001%."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def _ema_update(decay: float) -> Any:
    """``AveragedModel``'s multi-tensor update: ``ema ← d·ema + (1-d)·w`` for float tensors
    (one foreach lerp), ``d`` = :func:`ema_decay_at` of the updates so far; a copy for
    integer buffers (BN's ``num_batches_tracked``, which torch's own EMA function would
    average and truncate)."""

    @torch.no_grad()
    def update(ema: list[Tensor], current: list[Tensor], n: Tensor) -> None:
        if torch.is_floating_point(ema[0]):
            torch._foreach_lerp_(ema, current, 1.0 - ema_decay_at(decay, int(n)))
        else:
            for e, c in zip(ema, current, strict=True):
                e.copy_(c)

    return update


def build_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """The exponential moving average of ``model``'s weights and buffers (``None`` when
    ``decay`` is 0). ``use_buffers``: the BN running statistics are averaged with the
    weights, so they describe the averaged network rather than the last step's.
    The first :meth:`~AveragedModel.update_parameters` copies the weights; the n-th later one
    applies ``ema ← d·ema + (1-d)·w`` with ``d = min(decay, (1+n)/(10+n))``."""
    if decay <= 0.0:
        return None
    return AveragedModel(model, multi_avg_fn=_ema_update(decay), use_buffers=True)


class LRSchedule:
    """Sets the learning rate before every step; ``epoch_end`` feeds the plateau rule.

    ``total_steps`` is the planned length of the run (needed by cosine/warmup-linear).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        cfg: ScheduleConfig,
        *,
        base_lr: float,
        steps_per_epoch: int,
        total_steps: int,
        model_depth: int,
    ) -> None:
        self.optimizer, self.cfg, self.base_lr = optimizer, cfg, base_lr
        self.steps_per_epoch, self.total_steps = max(1, steps_per_epoch), max(1, total_steps)
        # Paper §4.2 warm-up, only for deep nets and only if the recipe asks for it.
        self.warming = cfg.warmup_lr is not None and model_depth >= cfg.warmup_min_depth
        self.plateau_scale = 1.0
        self.plateau_best: float | None = None
        self.plateau_bad = 0
        self.lr = base_lr
        self.length_fixed = False  # set once a time budget has fixed total_steps

    # state: plain numbers only
    def state_dict(self) -> dict[str, Any]:
        return {
            "warming": self.warming,
            "plateau_scale": self.plateau_scale,
            "plateau_best": self.plateau_best,
            "plateau_bad": self.plateau_bad,
            "total_steps": self.total_steps,  # a time budget may have set it (time_budget)
            "length_fixed": self.length_fixed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warming = bool(state["warming"])
        self.plateau_scale = float(state["plateau_scale"])
        best = state["plateau_best"]
        self.plateau_best = None if best is None else float(best)
        self.plateau_bad = int(state["plateau_bad"])
        self.length_fixed = bool(state.get("length_fixed", False))
        if self.length_fixed:  # a time budget's length; otherwise the config's plan stands
            self.total_steps = int(state["total_steps"])

    def fix_length(self, total_steps: int) -> None:
        """The run's length a time budget fixed (the checkpoint keeps it)."""
        self.total_steps, self.length_fixed = total_steps, True

    def lr_at(self, step: int) -> float:
        cfg, base = self.cfg, self.base_lr
        if self.warming and cfg.warmup_lr is not None:
            return cfg.warmup_lr
        warm = cfg.warmup_epochs * self.steps_per_epoch
        if cfg.name in ("cosine", "warmup-linear") and warm > 0 and step < warm:
            return base * (step + 1) / warm
        if cfg.name == "multistep":
            count = step if cfg.unit == "iter" else step // self.steps_per_epoch
            return base * cfg.gamma ** sum(count >= m for m in cfg.milestones)
        if cfg.name == "cosine":
            t = min(1.0, (step - warm) / max(1, self.total_steps - warm))
            return cfg.min_lr + (base - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * t))
        if cfg.name == "warmup-linear":
            t = min(1.0, (step - warm) / max(1, self.total_steps - warm))
            return cfg.min_lr + (base - cfg.min_lr) * (1 - t)
        if cfg.name == "plateau":
            return max(cfg.min_lr, base * self.plateau_scale)
        return base

    def step(self, step: int) -> float:
        """Set the learning rate for optimiser step number ``step`` (0-based)."""
        self.lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * group.get("lr_scale", 1.0)
        return self.lr

    def observe_train_error(self, error: float) -> None:
        """End the paper's warm-up once the running training error is below the threshold."""
        if self.warming and error < self.cfg.warmup_until_error:
            self.warming = False

    def epoch_end(self, metrics: dict[str, float]) -> None:
        if self.cfg.name != "plateau":
            return
        value = metrics[self.cfg.plateau_metric]
        better = self.plateau_best is None or (
            value < self.plateau_best
            if self.cfg.plateau_metric == "val_loss"
            else value > self.plateau_best
        )
        if better:
            self.plateau_best, self.plateau_bad = value, 0
            return
        self.plateau_bad += 1
        if self.plateau_bad > self.cfg.plateau_patience:
            self.plateau_scale *= self.cfg.plateau_factor
            self.plateau_bad = 0
