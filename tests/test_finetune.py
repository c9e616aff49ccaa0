"""Fine-tuning from pretrained weights: discriminative learning rates (the backbone slower
than the fresh head), no decay on BN and biases, and `--freeze-until STAGE` (frozen
weights get no gradient, frozen BN keeps its running statistics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import checkpoint_weights
from resnetlab.infer.folding import randomize_batchnorm
from resnetlab.models import create_model
from resnetlab.runtime.config import (
    RECIPES,
    ConfigError,
    OptimConfig,
    ScheduleConfig,
    resolve_config,
)
from resnetlab.train import build, fitting
from resnetlab.train.optim import LRSchedule, build_optimizer

CPU = torch.device("cpu")


def test_recipes_set_the_finetuning_options() -> None:
    for recipe in RECIPES:
        o = resolve_config(recipe, {"run.epochs": 1}).optim
        expected = (0.1, 0.0) if recipe == "finetune" else (1.0, None)
        assert (o.backbone_lr_scale, o.norm_bias_decay) == expected, recipe
    with pytest.raises(ConfigError, match="backbone_lr_scale must be a positive number"):
        resolve_config("finetune", {"run.epochs": 1, "optim.backbone_lr_scale": 0})
    with pytest.raises(ConfigError, match="not both"):
        resolve_config(
            "finetune",
            {"run.epochs": 1, "model.freeze_backbone": True, "model.freeze_until": "layer1"},
        )


def test_param_groups_give_the_backbone_a_scaled_lr() -> None:
    model = create_model("resnet20")
    cfg = OptimConfig(lr=0.1, weight_decay=1e-4, norm_bias_decay=0.0, backbone_lr_scale=0.1)
    backbone = build.backbone_parameters(model, "resnet20")
    opt = build_optimizer(list(model.parameters()), cfg, device=CPU, backbone=backbone)
    groups = [(g["lr"], g["weight_decay"], g["lr_scale"]) for g in opt.param_groups]
    expected = [(0.01, 1e-4, 0.1), (0.01, 0.0, 0.1), (0.1, 1e-4, 1.0), (0.1, 0.0, 1.0)]
    assert [pytest.approx(g) for g in groups] == expected
    where = {id(p): i for i, g in enumerate(opt.param_groups) for p in g["params"]}
    named = dict(model.named_parameters())
    assert [
        where[id(named[k])]
        for k in ("conv1.weight", "bn1.weight", "layer3.2.bn2.bias", "fc.weight", "fc.bias")
    ] == [0, 1, 1, 2, 3]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)
    # The schedule moves both lrs together: cosine halfway, 0.05 for the head.
    schedule = LRSchedule(
        opt,
        ScheduleConfig(name="cosine"),
        base_lr=0.1,
        steps_per_epoch=10,
        total_steps=100,
        model_depth=20,
    )
    schedule.step(50)
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == pytest.approx([0.005, 0.005, 0.05, 0.05])
    # Without pretrained weights (no backbone given) or at scale 1: the old single group.
    assert (
        len(
            build_optimizer(
                list(model.parameters()), OptimConfig(), device=CPU, backbone=backbone
            ).param_groups
        )
        == 1
    )


def test_freeze_until_leaves_frozen_weights_without_gradients() -> None:
    cfg = resolve_config(
        "finetune", {"run.epochs": 1, "model.name": "resnet18", "model.freeze_until": "layer2"}
    )
    model = build.build_model(cfg, num_classes=3, in_channels=3)
    model.train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    for name, p in model.named_parameters():
        frozen = name.split(".")[0] in ("conv1", "bn1", "layer1", "layer2")
        assert p.requires_grad is not frozen, name
        assert (p.grad is None) is frozen, name
    with pytest.raises(ValueError, match=r"'layer5': resnet18 has stem, layer1, layer2"):
        build.build_model(
            resolve_config(
                "finetune",
                {"run.epochs": 1, "model.name": "resnet18", "model.freeze_until": "layer5"},
            ),
            num_classes=3,
            in_channels=3,
        )


def test_finetune_recipe_from_pretrained_weights(tmp_path: Path, log_lines: list[str]) -> None:
    """The finetune recipe from a published-style weights file (a plain state dict):
    frozen stem and layer1 come back unchanged, BN running statistics included (their BN
    ran in eval mode), the rest trains; the discriminative lr is logged."""
    torch.manual_seed(0)
    pre = randomize_batchnorm(create_model("resnet20"))  # BN statistics far from fresh ones
    weights = tmp_path / "pretrained.pth"
    torch.save(pre.state_dict(), weights)
    over: dict[str, Any] = {
        "model.name": "resnet20",
        "model.options.head": "linear",
        "model.pretrained": str(weights),
        "model.freeze_until": "layer1",
        "data.source": "sample",
        "data.limit_per_class": 10,
        "data.image_size": None,
        "data.batch_size": 20,
        "data.eval_batch_size": 100,
        "run.epochs": 1,
        "run.test": False,
        "run.out_dir": str(tmp_path),
        "run.name": "ft",
        "run.precision": "fp32",
        "optim.lr": 0.01,
    }
    messages = log_lines
    result = fitting.fit(resolve_config("finetune", over))
    assert result.status == "completed"
    assert any("discriminative lr: the pretrained backbone at lr × 0.1" in m for m in messages)
    before, after = pre.state_dict(), checkpoint_weights(result.run_dir / "last.pt")
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "bn1.running_var",
        "layer1.2.bn2.running_var",
        "layer1.0.conv1.weight",
    ):
        assert torch.equal(before[key], after[key]), key
    for key in ("layer2.0.conv1.weight", "layer3.2.bn2.running_mean", "layer3.2.bn2.weight"):
        assert not torch.equal(before[key], after[key]), key
    assert after["fc.weight"].shape == (10, 64)
