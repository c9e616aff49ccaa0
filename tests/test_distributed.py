"""Data-parallel training on CPU with gloo: the sampler, the lr rule, the stop agreement, and
two real 2-process runs (one through ``torch.multiprocessing``, one through ``torchrun`` and
the command line)."""

from __future__ import annotations

import json
import os
import signal
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
from resnetlab.train import fitting, parts
from resnetlab.train.distributed import (
    _parent_started,
    agreed_stop,
    restart_point,
    scaled_lr,
    stop_flags,
)
from resnetlab.train.logs import read_steps


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
    done = fitting.fit(tiny(tmp_path, "one", **{"run.iterations": 1}))
    state = load_checkpoint(done.run_dir / "last.pt")
    save_checkpoint({**state, "world_size": 2}, done.run_dir / "last.pt")
    with pytest.raises(ConfigError, match="trained by 2 process"):
        fitting.fit(tiny(tmp_path, "one", **{"run.iterations": 2}), resume=done.run_dir)


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
    build = parts.build_model
    parts.build_model = lambda *a, **k: Float64(build(*a, **k))  # type: ignore[assignment]


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
    first = fitting.fit(tiny(Path(out), "ddp", **EMA, **{"run.time_limit_min": 1e-6}))
    assert first.status == "time", first.status
    os.environ["MASTER_PORT"] = str(ports[1])
    fitting.fit(tiny(Path(out), "ddp", **EMA), resume=first.run_dir)


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

    monkeypatch.setattr(parts, "build_model", parts.build_model)  # undone after the test
    _float64_models()
    single = fitting.fit(tiny(tmp_path, "single", **EMA, **{"data.batch_size": 16}))
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


# ---------------------------------------------------------------- two nodes, a killed worker
# Bit-identical on CPU in float32: every process runs one thread (torchrun sets
# OMP_NUM_THREADS=1 only with several processes a node) and augmentation is off.
ELASTIC_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# 10 images a class: 6 steps an epoch, so 12 steps are 2 epochs (a checkpoint after each).
ELASTIC_RUN = (
    *TINY_RUN,
    *("--limit-per-class", "10", "--iterations", "12", "--no-test"),
    *("--set", "data.augment=none", "--set", "run.log_every=2"),
)
LAUNCH_S = 120  # each torchrun launch of these tests, at most


def launch(launcher: list[str], target: list[str], *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher, *target, "train", *args]
    env = {**os.environ, **ELASTIC_ENV}
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # a timeout kills the agent and its workers together
    )  # fmt: skip


def finish(*procs: subprocess.Popen[str]) -> list[tuple[int, str]]:
    """Each launch's exit status and output; every launch killed after LAUNCH_S seconds."""
    deadline, out = time.monotonic() + LAUNCH_S, []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for q in procs:
                if q.poll() is None:
                    os.killpg(q.pid, signal.SIGKILL)
            pytest.fail(f"a torchrun launch did not finish in {LAUNCH_S} s")
        out.append((p.returncode, stdout + stderr))
    return out


def one_node(*args: str, target: tuple[str, ...] = ("-m", "resnetlab")) -> tuple[int, str]:
    launcher = ["--nproc-per-node=2", f"--master-port={free_port()}", "--max-restarts=1"]
    return finish(launch(launcher, list(target), *args))[0]


def two_nodes(*args: str) -> list[tuple[int, str]]:
    """Two torchrun agents, one process each, meeting as two "nodes" on 127.0.0.1."""
    port, rdzv = free_port(), f"resnetlab-{os.getpid()}-{time.monotonic_ns()}"
    launcher = [
        *("--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d"),
        *(f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={rdzv}"),
    ]
    return finish(*(launch(launcher, ["-m", "resnetlab"], *args) for _ in range(2)))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run_dir / "last.pt")
    return {f"{part}.{k}": v for part in ("model", "train_model") for k, v in state[part].items()}


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One node, 2 processes, no interruption: the run the others must equal."""
    out = tmp_path_factory.mktemp("straight")
    code, said = one_node(*ELASTIC_RUN, "--out", str(out), "--name", "run")
    assert code == 0, said
    rows = (out / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[:3] for r in rows[1:]] == [["1", "2", "7"], ["2", "2", "12"]]
    return out / "run"


@pytest.mark.slow
def test_two_torchrun_agents_as_two_nodes_train_and_resume_like_one(
    tmp_path: Path, straight: Path
) -> None:
    run = ("--out", str(tmp_path), "--name", "run")
    paused = two_nodes(*ELASTIC_RUN, *run, "--time-limit", "0.000001")
    assert [code for code, _ in paused] == [0, 0], paused
    assert load_checkpoint(tmp_path / "run" / "last.pt")["partial"]["batches_done"] == 2
    resumed = two_nodes("--resume", str(tmp_path / "run"), "--time-limit", "10")
    assert [code for code, _ in resumed] == [0, 0], resumed
    assert sum("resuming" in said for _, said in resumed) == 1  # rank 0, on either agent
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 12 and state["world_size"] == 2 and state["partial"] is None
    assert_bit_identical(weights(tmp_path / "run"), weights(straight))


# Run by torchrun in place of `-m resnetlab`: rank 1 of the first attempt SIGKILLs itself
# after optimiser step $KILL_AT_STEP (a test-only hook, not in the package).
KILLER = """
import os, runpy, signal
from torch.optim.optimizer import register_optimizer_step_post_hook
steps = 0
def hook(*_):
    global steps
    steps += 1
    first = os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0"
    if first and os.environ["RANK"] == "1" and steps == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
register_optimizer_step_post_hook(hook)
runpy.run_module("resnetlab", run_name="__main__")
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [9, 3], ids=["after-a-checkpoint", "before-any"])
def test_a_killed_worker_is_restarted_and_ends_as_an_uninterrupted_run(
    tmp_path: Path, straight: Path, monkeypatch: pytest.MonkeyPatch, kill_at: int
) -> None:
    """Rank 1 SIGKILLed after step 9 (mid-epoch 2; last.pt holds epoch 1) or step 3 (no
    checkpoint yet): torchrun restarts both workers with the same command line, and the run
    resumes from epoch 1's checkpoint or starts afresh, to the uninterrupted run's weights."""
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    monkeypatch.setenv("KILL_AT_STEP", str(kill_at))
    out = tmp_path / "out"
    code, said = one_node(*ELASTIC_RUN, "--out", str(out), "--name", "run", target=(str(killer),))
    assert code == 0, said
    assert "failed (exitcode: -9) local_rank: 1" in said, said  # the kill did happen
    if kill_at > 7:  # epoch 1 is 7 steps (the last, partial batch kept)
        assert f"torchrun restart 1: resuming {out / 'run' / 'last.pt'}, saved by this" in said
    else:
        assert "torchrun restart 1: the failed attempt saved no checkpoint; starting" in said
    assert_bit_identical(weights(out / "run"), weights(straight))
    rows = (out / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]  # each epoch logged once
    # steps.csv may repeat the steps after the checkpoint; read_steps keeps the last of each
    assert read_steps(out / "run") == read_steps(straight)
    steps = [row["step"] for row in read_steps(straight)]
    assert steps == [2, 4, 6, 7, 9, 11, 12], (
        steps
    )  # every 2 steps of each 7-step epoch, and its end


def test_a_restart_resumes_or_clears_only_what_this_launch_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    """This process's parent (pytest's) stands in for the torchrun agent: files written now
    are this "launch's", files dated before the parent started are an older run's."""
    said = log_lines
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(b"x")
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    assert restart_point(run_dir) is None  # the first start: as always
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert restart_point(run_dir) == run_dir / "last.pt"
    assert said == [f"torchrun restart 1: resuming {run_dir / 'last.pt'}, saved by this launch"]
    started = _parent_started()
    assert started is not None and started <= time.time()
    os.utime(run_dir / "last.pt", (started - 60, started - 60))
    assert restart_point(run_dir) is None  # an older run's: left to the error
    assert len(said) == 1

    (run_dir / "last.pt").unlink()  # an attempt that died before its first checkpoint
    (run_dir / "config.yaml").write_text("x")
    (run_dir / "steps.csv").write_text("step\n")
    (run_dir / "notes.txt").write_text("mine")
    os.utime(run_dir / "steps.csv", (started - 60, started - 60))
    assert restart_point(run_dir) is None
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "notes.txt", "steps.csv"]
    os.utime(run_dir / "steps.csv")  # now all of this launch
    assert restart_point(run_dir) is None
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"]  # only the run's own files
    assert said[-1].startswith("torchrun restart 1: the failed attempt saved no checkpoint")
