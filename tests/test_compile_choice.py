"""``run.compile: auto`` (the ``fast`` recipe's): compiled where it measured faster (CPUs with
AMX), eager elsewhere, and eager with one line where no C++ compiler is found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from resnetlab.runtime import execution
from resnetlab.runtime.config import ConfigError, resolve_config
from resnetlab.train import build as train_build
from resnetlab.train.fitting import fit


def _tiny(tmp_path: Path, **over: Any) -> Any:
    base: dict[str, Any] = {
        "data.source": "sample",
        "data.limit_per_class": 4,
        "data.batch_size": 20,
        "run.iterations": 1,
        "run.out_dir": str(tmp_path),
        "run.precision": "fp32",
    }
    return resolve_config("paper-cifar", {**base, **over})


def test_fast_recipe_compiles_where_it_measured_faster() -> None:
    assert resolve_config("fast", {}).run.compile == "auto"
    assert resolve_config("paper-cifar", {}).run.compile is False
    with pytest.raises(ConfigError, match="run.compile must be one of"):
        resolve_config("fast", {"run.compile": "sometimes"})
    on, why = execution.compile_pays(torch.device("cpu"))
    assert on == bool(torch.cpu._is_amx_tile_supported()) and "AMX" in why
    assert execution.compile_pays(torch.device("meta"))[0] is False
    # A short run does not repay the build: eager, and the log says why.
    short, why = execution.compile_pays(torch.device("cpu"), execution.COMPILE_MIN_STEPS - 1)
    assert short is False and ("too few" in why or "no AMX" in why)
    assert execution.compile_pays(torch.device("cpu"), execution.COMPILE_MIN_STEPS)[0] == on


@pytest.mark.parametrize(("amx", "min_steps"), [(True, 1), (False, 1), (True, 10**6)])
def test_auto_follows_the_cpu_and_the_run_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amx: bool, min_steps: int, log_lines: list[str]
) -> None:
    compiled: list[Any] = []
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(execution, "COMPILE_MIN_STEPS", min_steps)
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or m)
    lines = log_lines
    cfg = _tiny(tmp_path, **{"run.compile": "auto", "run.name": f"a{amx}{min_steps}"})
    result = fit(cfg)
    assert result.status in ("completed", "iterations")
    on = amx and min_steps == 1
    assert len(compiled) == int(on)
    assert any(f"run.compile auto: {'on' if on else 'off'}" in line for line in lines)
    if amx and not on:
        assert any("too few to repay the build" in line for line in lines)


def test_no_compiler_trains_eager_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    compiled: list[Any] = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or m)
    monkeypatch.setattr(train_build, "compile_unavailable", lambda _d: "no C++ compiler (test)")
    lines = log_lines
    result = fit(_tiny(tmp_path, **{"run.compile": True, "run.name": "nocc"}))
    assert result.status in ("completed", "iterations") and compiled == []
    assert any(
        "run.compile skipped: no C++ compiler (test); training runs eager" in x for x in lines
    )
