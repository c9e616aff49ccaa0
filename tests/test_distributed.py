"""Data-parallel training on CPU with gloo: the sampler, the lr rule, the stop agreement, and
two real 2-process runs (one through ``torch.multiprocessing``, one through ``torchrun`` and
the command line)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from resnetlab.data.augment import Preprocess
from resnetlab.data.loaders import BatchPlan, TrainBatches, shard_order
from resnetlab.data.tensors import ImageTensors
from resnetlab.runtime.checkpoint import load_checkpoint, save_checkpoint
from resnetlab.runtime.config import ConfigError, TrainConfig, resolve_config
from resnetlab.train import run, runner
from resnetlab.train.distributed import agreed_stop, scaled_lr, stop_flags


def quiet(_msg: str) -> None:
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---------------------------------------------------------------- the sampler
def test_shards_are_disjoint_and_rebuild_the_single_process_batches() -> None:
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    parts = [shard_order(order, 4, r, 3) for r in range(3)]
    assert all(len(p) == 16 for p in parts)  # 50 // 12 = 4 global batches of 3 × 4
    assert len(set(torch.cat(parts).tolist())) == 48
    single = shard_order(order, 12)
    for b in range(4):
        glued = torch.cat([p[b * 4 : (b + 1) * 4] for p in parts])
        assert torch.equal(glued, single[b * 12 : (b + 1) * 12])


def _images(n: int = 40) -> ImageTensors:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    return ImageTensors(x, torch.arange(n) % 4, ("a", "b", "c", "d"))


def test_rank_batches_concatenate_to_the_global_batch() -> None:
    data, cpu = _images(), torch.device("cpu")
    pre = Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3, image_size=8, augment="none")
    single = list(TrainBatches(data, pre, BatchPlan(8, seed=3, epoch=2), cpu))
    ranks = [
        list(TrainBatches(data, pre, BatchPlan(4, seed=3, epoch=2, rank=r, world_size=2), cpu))
        for r in range(2)
    ]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 5
    for b, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][b][0], ranks[1][b][0]]), x)
        assert torch.equal(torch.cat([ranks[0][b][1], ranks[1][b][1]]), y)


def test_a_rank_resumes_its_own_augmentation_mid_epoch() -> None:
    data, cpu = _images(), torch.device("cpu")
    pre = Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3, image_size=8, augment="cifar")
    plan = BatchPlan(4, seed=1, epoch=0, rank=1, world_size=2)
    whole = list(TrainBatches(data, pre, plan, cpu))
    other = list(TrainBatches(data, pre, replace(plan, rank=0), cpu))
    assert not torch.equal(whole[0][0], other[0][0])  # each rank draws its own crops
    first = TrainBatches(data, pre, plan, cpu)
    it = iter(first)
    next(it), next(it)
    later = replace(plan, start_batch=2, generator_state=first.generator_state())
    rest = TrainBatches(data, pre, later, cpu)
    for (x, y), (x2, y2) in zip(whole[2:], rest, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)


# ---------------------------------------------------------------- rules
def test_linear_scaling_rule() -> None:
    assert scaled_lr(0.1, batch_size=128, world_size=4, reference=256) == pytest.approx(0.2)
    assert scaled_lr(0.1, batch_size=128, world_size=4, reference=None) == 0.1
    assert scaled_lr(0.1, batch_size=128, world_size=4, reference=256, enabled=False) == 0.1


def test_every_rank_acts_on_the_most_urgent_stop_request() -> None:
    summed = [a + b for a, b in zip(stop_flags(""), stop_flags("sigterm"), strict=True)]
    assert agreed_stop(summed) == "sigterm"
    assert (
        agreed_stop([a + b for a, b in zip(stop_flags("time"), stop_flags("sigint"), strict=True)])
        == "sigint"
    )
    assert agreed_stop(stop_flags("")) == ""


def tiny(out: Path, name: str, **over: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "data.source": "sample",
        "data.limit_per_class": 20,
        "data.batch_size": 8,
        "data.eval_batch_size": 50,
        "data.augment": "none",
        "optim.lr": 0.02,
        "run.iterations": 6,
        "run.out_dir": str(out),
        "run.name": name,
        "run.device": "cpu",
        "run.precision": "fp32",
        "run.log_every": 2,
        "run.test": False,
        "run.sync_bn": True,
        "model.options.layers": [1, 1, 1],  # ResNet-8: BN, strides and shortcuts, fewer ops
    }
    base.update(over)
    return resolve_config("paper-cifar", base)


def test_resume_needs_the_same_number_of_processes(tmp_path: Path) -> None:
    done = runner.fit(tiny(tmp_path, "one", **{"run.iterations": 1}), log=quiet)
    state = load_checkpoint(done.run_dir / "last.pt")
    save_checkpoint({**state, "world_size": 2}, done.run_dir / "last.pt")
    with pytest.raises(ConfigError, match="trained by 2 process"):
        runner.fit(tiny(tmp_path, "one", **{"run.iterations": 2}), resume=done.run_dir, log=quiet)


# ---------------------------------------------------------------- 2 ranks = 1 process
class Float64(nn.Module):
    """The model in float64, so that the comparison below measures the algorithm and not
    float32 rounding, which training amplifies (a rounding can flip a ReLU)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x.double())
        return out


def _float64_models() -> None:
    build = run.build_model
    run.build_model = lambda *a, **k: Float64(build(*a, **k))  # type: ignore[assignment]


# A weight EMA rides along: the average each rank keeps must be the single process's too.
EMA = {"optim.ema_decay": 0.5}


def _rank(rank: int, ports: tuple[int, int], out: str) -> None:
    """One of two ranks: train until the time limit stops it at the first log point (mid-
    epoch), then resume to the end."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(ports[0]),
    )
    torch.set_num_threads(1)
    _float64_models()
    first = runner.fit(tiny(Path(out), "ddp", **EMA, **{"run.time_limit_min": 1e-6}), log=quiet)
    assert first.status == "time", first.status
    os.environ["MASTER_PORT"] = str(ports[1])
    runner.fit(tiny(Path(out), "ddp", **EMA), resume=first.run_dir, log=quiet)


@pytest.mark.slow
def test_two_ranks_match_one_process_with_twice_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 ranks × batch 8 with SyncBN (paused and resumed mid-epoch) = 1 process × batch 16,
    after 6 SGD steps: the weights that train and their EMA alike."""
    procs = torch.multiprocessing.start_processes(
        _rank,
        args=((free_port(), free_port()), str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 300
    while not procs.join(timeout=5):
        if time.monotonic() > deadline:
            for p in procs.processes:
                p.kill()
            pytest.fail("the 2-process run did not finish in 300 s")
    paused_then_resumed = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert paused_then_resumed["step"] == 6 and paused_then_resumed["world_size"] == 2
    steps = (tmp_path / "ddp" / "steps.csv").read_text().splitlines()
    assert [s.split(",")[0] for s in steps] == ["step", "2", "4", "6"]

    monkeypatch.setattr(run, "build_model", run.build_model)  # undone after the test
    _float64_models()
    single = runner.fit(tiny(tmp_path, "single", **EMA, **{"data.batch_size": 16}), log=quiet)
    alone = load_checkpoint(single.run_dir / "last.pt")
    assert paused_then_resumed["ema_updates"] == alone["ema_updates"] == 6
    for part in ("model", "train_model"):  # the average, and the weights that train
        a, b = paused_then_resumed[part], alone[part]
        assert a.keys() == b.keys()
        diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
        print(f"{part}: max abs weight difference {diff:.3g}")
        assert diff < 1e-5, (part, diff)
    assert not torch.equal(alone["model"]["net.fc.weight"], alone["train_model"]["net.fc.weight"])
    rows = [json.loads(r) for r in (single.run_dir / "metrics.jsonl").read_text().splitlines()]
    ddp_rows = [
        json.loads(r) for r in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(rows) == len(ddp_rows) == 1
    for key in ("train_loss", "val_loss", "val_top1"):  # metrics are the global batch's
        assert ddp_rows[0][key] == pytest.approx(rows[0][key], abs=1e-6)


# ---------------------------------------------------------------- torchrun and the CLI
def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "resnetlab",
        "train",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


# A 6-step run on 20 images a class of the shipped sample, batch 8 a rank: what the
# torchrun tests train.
TINY_RUN = (
    *("--data", "sample", "--limit-per-class", "20", "--batch-size", "8"),
    *("--iterations", "6", "--precision", "fp32", "--device", "cpu"),
)


@pytest.mark.slow
def test_torchrun_cli_runs_writes_one_folder_and_resumes(tmp_path: Path) -> None:
    first = torchrun(
        "--recipe",
        "paper-cifar",
        *TINY_RUN,
        "--out",
        str(tmp_path),
        "--name",
        "run",
        "--no-test",
        "--time-limit",
        "0.000001",
        "--set",
        "run.log_every=2",
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("run folder:") == 1  # rank 1 says nothing
    assert "2 processes × batch 8 = 16" in first.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    paused = load_checkpoint(tmp_path / "run" / "last.pt")
    assert paused["partial"]["batches_done"] == 2 and len(paused["ranks"]) == 2

    again = torchrun("--resume", str(tmp_path / "run"), "--time-limit", "10")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming" in again.stdout
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 6 and state["partial"] is None
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 2  # the header and epoch 1, written once (by rank 0)
    assert (tmp_path / "run" / "results.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.slow
def test_torchrun_trains_the_fast_recipe_with_every_modern_option(tmp_path: Path) -> None:
    """The modern options (EMA, mixup/CutMix, TrivialAugment, random erasing, stochastic
    depth, TTA) under two processes, through the command line as a user runs them."""
    done = torchrun(
        "--recipe",
        "fast",
        *TINY_RUN,
        "--out",
        str(tmp_path),
        "--name",
        "modern",
        *("--set", "model.options.layers=[1,1,1]"),
        *("--set", "model.options.drop_path=0.1"),
        *("--set", "data.augment=trivialaugment"),
        *("--set", "data.random_erasing=0.25"),
        *("--set", "data.mixup_alpha=0.2"),
        *("--set", "data.cutmix_alpha=1.0"),
        *("--set", "optim.ema_decay=0.9"),
        *("--set", "run.tta=flip-shift"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("run folder:") == 1
    assert "2 processes × batch 8 = 16" in done.stdout
    results = json.loads((tmp_path / "modern" / "results.json").read_text())
    assert results["tta"] == "flip-shift" and results["ema_decay"] == 0.9
    assert results["test"]["top1"] is not None
    state = load_checkpoint(tmp_path / "modern" / "last.pt")
    assert state["step"] == 6 and state["ema_updates"] == 6 and state["world_size"] == 2
    assert (state["preprocess"]["augment"], state["preprocess"]["policy"]) == (
        "cifar",
        "trivialaugment",
    )


@pytest.mark.parametrize("rank", ["0", "1"])
def test_stale_torchrun_variables_fail_in_bounded_time(tmp_path: Path, rank: str) -> None:
    """WORLD_SIZE/RANK/MASTER_* left in a shell from an earlier launch, no peer: one line and
    exit 2 after $RESNETLAB_JOIN_TIMEOUT seconds, not torch's silent 30-minute wait."""
    env = {
        **os.environ,
        "WORLD_SIZE": "2",
        "RANK": rank,
        "LOCAL_RANK": rank,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "RESNETLAB_JOIN_TIMEOUT": "3",
        "RESNETLAB_CACHE": str(tmp_path / "cache"),
    }
    argv = ["train", "--recipe", "paper-cifar", *TINY_RUN, "--out", str(tmp_path), "--no-test"]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "resnetlab", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"rank {rank} of 2 could not join the others" in done.stderr
    assert "within 3 s" in done.stderr and "stale variables" in done.stderr
    assert time.monotonic() - start < 60
