"""Names that changed (issue 30) and what was written under the earlier ones still reads.

The ``onecycle`` schedule is ``warmup-linear`` now (a linear warm-up, then a linear decay;
not torch's ``OneCycleLR``); a checkpoint's fields are named as they are stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from resnetlab.experiments.runs import Budget, digest, find_run
from resnetlab.runtime.checkpoint import Checkpoint, load_checkpoint
from resnetlab.runtime.config import ConfigError, config_from_dict, resolve_config
from resnetlab.train.optim import LRSchedule
from resnetlab.train.start_or_resume import check_config_file

LEGACY = Path(__file__).parent / "legacy" / "run"


def test_the_fast_recipe_names_its_schedule_for_what_it_is() -> None:
    assert resolve_config("fast").schedule.name == "warmup-linear"


def test_the_earlier_schedule_name_is_read_everywhere(tmp_path: Path) -> None:
    """--set, a recipe file and a saved config all read ``onecycle`` as ``warmup-linear``."""
    by_set = resolve_config("fast", {"schedule.name": "onecycle"})
    assert by_set == resolve_config("fast")
    recipe = tmp_path / "old.yaml"
    recipe.write_text(yaml.safe_dump({"schedule": {"name": "onecycle"}, "run": {"epochs": 1}}))
    assert resolve_config(str(recipe)).schedule.name == "warmup-linear"
    saved = resolve_config("fast").to_dict()
    saved["schedule"]["name"] = "onecycle"
    assert config_from_dict(saved) == resolve_config("fast")
    with pytest.raises(ConfigError, match="schedule.name must be one of .*warmup-linear"):
        resolve_config("fast", {"schedule.name": "one-cycle"})


def test_warmup_linear_warms_up_then_decays_linearly() -> None:
    cfg = resolve_config("fast", {"schedule.warmup_epochs": 1}).schedule
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    s = LRSchedule(opt, cfg, base_lr=0.2, steps_per_epoch=5, total_steps=25, model_depth=20)
    assert [round(s.lr_at(i), 6) for i in (0, 4, 5, 15, 25)] == [0.04, 0.2, 0.2, 0.1, 0.0]


def test_the_run_store_keeps_its_keys_across_the_rename(tmp_path: Path) -> None:
    """The budget protocol's digest is the one made before the rename (read at commit
    09dac1a), and a run folder whose config.yaml says ``onecycle`` is found, not retrained."""
    cfg = Budget().config("resnet20", 0, tmp_path)
    assert cfg.schedule.name == "warmup-linear"
    assert (cfg.run.name, digest(cfg)) == ("resnet20-s0-6656623a", "6656623a")
    old = tmp_path / "resnet20-s0-0123abcd"
    old.mkdir()
    saved = cfg.to_dict()
    saved["schedule"]["name"] = "onecycle"
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    assert find_run(tmp_path, cfg) == old


def test_a_config_file_with_the_earlier_name_is_not_an_edit() -> None:
    ckpt = Checkpoint.load(LEGACY / "last.pt")
    assert ckpt.config.schedule.name == "warmup-linear"
    assert "name: onecycle" in (LEGACY / "config.yaml").read_text()
    check_config_file(ckpt.config, ckpt.config.to_dict(), LEGACY / "config.yaml")  # no error


def test_checkpoint_fields_are_named_as_stored() -> None:
    """An earlier file's ``model``, ``train_model`` and ``preprocess`` entries are the fields
    of those names, and saving writes the same keys back."""
    raw = load_checkpoint(LEGACY / "last.pt")
    ckpt = Checkpoint.from_state(raw, LEGACY / "last.pt")
    assert ckpt.model.keys() == raw["model"].keys()
    assert ckpt.train_model is not None and ckpt.train_model.keys() == raw["train_model"].keys()
    assert all(torch.equal(ckpt.model[k], v) for k, v in raw["model"].items())
    assert ckpt.preprocess.policy == raw["preprocess"]["policy"]
    assert ckpt.eval_preprocess.mean == tuple(raw["preprocess"]["mean"])
    assert list(ckpt.to_state()) == [k for k in raw if k != "format"]
