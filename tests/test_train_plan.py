"""Planned once (issue 30): ``make_plan`` decides a run's numbers from the config and the
data's facts, and the plan is frozen; a time budget's length is a new plan."""

from __future__ import annotations

import dataclasses

import pytest

from resnetlab.data.datasets import load_data
from resnetlab.runtime.config import resolve_config
from resnetlab.train.build import resolve_pipeline
from resnetlab.train.plan import TrainPlan, make_plan


def _plan(overrides: dict[str, object], world_size: int = 1) -> TrainPlan:
    cfg = resolve_config("fast", {"data.source": "sample", "data.limit_per_class": 2, **overrides})
    cfg, _ = resolve_pipeline(cfg)
    return make_plan(cfg, load_data("sample", seed=0, limit=2), world_size, None)


def test_the_plan_holds_the_numbers_the_run_trains_by() -> None:
    plan = _plan({"data.batch_size": 4, "run.epochs": 3, "schedule.warmup_lr": 0.01})
    assert plan.cfg.data.batch_size == 4  # 2 images of each of the sample's 10 classes
    assert (plan.train_size, plan.steps_per_epoch, plan.dropped) == (20, 5, 0)
    assert plan.total_steps == 3 * plan.steps_per_epoch and plan.max_epochs == 3
    assert plan.pre.augment == "cifar" and plan.global_batch == 4
    # the warm-up lr scales with the lr it precedes (unscaled here: no optim.reference_batch)
    assert plan.schedule.warmup_lr == pytest.approx(0.01 * plan.lr / plan.cfg.optim.lr)


def test_the_linear_scaling_rule_scales_the_lr_and_the_warm_up_with_it() -> None:
    scaled: dict[str, object] = {
        "data.batch_size": 2,
        "optim.reference_batch": 2,
        "schedule.warmup_lr": 0.01,
    }
    one, two = _plan(scaled), _plan(scaled, 2)
    assert one.lr == pytest.approx(one.cfg.optim.lr)  # global batch 2 = the reference
    assert two.global_batch == 2 * one.global_batch
    assert two.lr == pytest.approx(2 * one.lr)
    assert two.schedule.warmup_lr == pytest.approx(2 * one.schedule.warmup_lr)  # type: ignore[operator]


def test_the_plan_is_frozen_and_a_budget_makes_a_new_one() -> None:
    plan = _plan({"run.epochs": 10})
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.total_steps = 1  # type: ignore[misc]
    fixed = plan.with_length(2 * plan.steps_per_epoch + 1)
    assert (fixed.total_steps, fixed.max_epochs, fixed.length_fixed) == (
        2 * plan.steps_per_epoch + 1,
        3,
        True,
    )
    assert (plan.max_epochs, plan.length_fixed) == (10, False)  # the first plan stands
