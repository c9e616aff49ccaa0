"""The GPU benchmark script runs its code on a CPU with --smoke (no GPU here): so a session
that is lent a GPU spends its device time measuring, not debugging."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _scripts_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripts import their shared ``common`` module from their own folder."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))


def _gpu_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resnet50_training_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    out = _gpu_script().main(["resnet50", "--smoke", "--no-compile", "--device", "cpu"])
    r = out["resnet50"]
    assert r["images_per_s"]["resnetlab resnet50_v1_5"] > 0
    assert 0 < r["resnetlab_share_of_matmul"] < 2
    assert "images/s" in capsys.readouterr().out


def test_cifar_benchmarks_run_through_the_training_loop(tmp_path: Path) -> None:
    gpu = _gpu_script()
    out = gpu.main(
        [
            "all",
            "--smoke",
            "--no-compile",
            "--device",
            "cpu",
            "--data",
            "sample",
            "--json",
            str(tmp_path / "gpu.json"),
        ]
    )
    for model in ("resnet20", "resnet18"):
        epoch = out["cifar-epoch"][model]
        assert len(epoch["epoch_train_s"]) == 1 and epoch["epoch_train_s"][0] > 0
        assert epoch["device"] == "cpu"
    assert 0 <= out["time-to-94"]["test_top1"] <= 100
    assert (tmp_path / "gpu.json").is_file()
