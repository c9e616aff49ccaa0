"""Really kill training with SIGKILL at random moments, resume it, and check that the final
weights are bit-for-bit those of an uninterrupted run:

    .venv/bin/python scripts/kill_resume.py --trials 10 --seed 1

Each trial starts ``python -m resnetlab train`` (CPU, fp32, fixed seed, the shipped sample),
waits for its first checkpoint, sends SIGKILL after a random delay (anywhere in the rest of
the run: training, validation, a checkpoint being written), then runs
``resnetlab train --resume RUN`` to completion. A SIGKILL cannot be caught, so the run loses
the partial epoch; ``last.pt`` (written at each epoch's end, atomically) must still be
readable and the resumed run must end with exactly the reference weights. Exit status 1 if
any trial differs. tests/test_faults.py runs one trial of this.

"repeated" counts metrics.jsonl rows logged twice: the runner logs an epoch's row just
before writing its checkpoint, so a kill between the two logs that epoch again on resume.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from resnetlab.runtime.checkpoint import Checkpoint


@dataclass(frozen=True)
class Setup:
    """The training run every trial repeats (small: about 0.4 s per epoch on one core)."""

    epochs: int = 5
    limit_per_class: int = 5  # 50 training images, 5 steps per epoch
    batch_size: int = 10
    seed: int = 0

    def command(self, out: Path, name: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "resnetlab",
            "train",
            "--recipe",
            "paper-cifar",
            "--data",
            "sample",
            "--epochs",
            str(self.epochs),
            "--limit-per-class",
            str(self.limit_per_class),
            "--batch-size",
            str(self.batch_size),
            "--seed",
            str(self.seed),
            "--precision",
            "fp32",
            "--device",
            "cpu",
            "--no-test",
            "--out",
            str(out),
            "--name",
            name,
        ]


@dataclass(frozen=True)
class Trial:
    name: str
    delay_s: float  # after the first checkpoint appeared
    killed: bool  # False: the run had finished before the signal
    epoch_at_kill: int  # the epoch last.pt held after the kill
    temps_at_kill: int  # temporary files a save cut short left behind
    temps_after: int  # … still there after the resumed run
    resume_s: float
    identical: bool
    max_abs_diff: float
    repeated_rows: int  # metrics.jsonl rows of an epoch logged twice (see the docstring)


def environment() -> dict[str, str]:
    """One thread per process (deterministic and light on a shared CPU), and the
    resnetlab this script lives beside."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def reference(setup: Setup, out: Path) -> Path:
    """An uninterrupted run; returns its folder."""
    done = subprocess.run(
        setup.command(out, "reference"),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"reference run failed:\n{done.stdout}\n{done.stderr}")
    return out / "reference"


def compare(a: Path, b: Path) -> tuple[bool, float]:
    """Whether two checkpoints hold bit-identical weights, and the largest difference."""
    wa, wb = Checkpoint.load(a).model, Checkpoint.load(b).model
    if wa.keys() != wb.keys():
        return False, float("inf")
    identical = all(torch.equal(wa[k], wb[k]) for k in wa)
    diff = max(
        ((wa[k].double() - wb[k].double()).abs().max().item() for k in wa if wa[k].numel()),
        default=0.0,
    )
    return identical, diff


def _temps(run: Path) -> int:
    return len(list(run.glob(".*.tmp")))


@dataclass(frozen=True)
class Kill:
    delay_s: float  # after the first checkpoint appeared
    killed: bool  # False: the run had finished before the signal
    epoch: int  # the epoch last.pt holds after the kill
    temps: int  # temporary files a save cut short left behind


def start_and_kill(setup: Setup, out: Path, name: str, fraction: float) -> Kill:
    """Start a run and SIGKILL it ``fraction`` of the way through the rest of the run after
    its second epoch, estimated from that epoch's duration (the first one's includes oneDNN's
    warm-up, which made later epochs several times faster on a loaded machine and a kill
    meant for epoch 3 land after the run had ended)."""
    run = out / name
    proc = subprocess.Popen(
        setup.command(out, name),
        env=environment(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        ended: dict[int, float] = {}
        for line in proc.stdout:
            for k in (1, 2):
                if line.startswith(f"epoch {k}/"):  # epoch k done; its checkpoint is being written
                    ended[k] = time.monotonic()
            if 2 in ended:
                break
        else:
            raise RuntimeError(f"the run ended before its second epoch (status {proc.wait()})")
        epoch_s = ended[2] - ended.get(1, ended[2])
        # The rest of the run is about (epochs - 2) epochs; stop short of its very end.
        delay = fraction * max(setup.epochs - 2.5, 0.5) * epoch_s
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        status = proc.wait(timeout=60)
        proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    epoch = Checkpoint.load(run / "last.pt").epoch
    return Kill(delay, status == -signal.SIGKILL, epoch, _temps(run))


def kill_and_resume(setup: Setup, out: Path, name: str, fraction: float, ref: Path) -> Trial:
    """One trial: kill (see :func:`start_and_kill`), ``resnetlab train --resume`` to
    completion, compare with the reference run ``ref``."""
    run = out / name
    kill = start_and_kill(setup, out, name, fraction)
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "resnetlab", "train", "--resume", str(run)],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    resume_s = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"resume failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    identical, diff = compare(ref / "last.pt", run / "last.pt")
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    return Trial(
        name,
        kill.delay_s,
        kill.killed,
        kill.epoch,
        kill.temps,
        _temps(run),
        resume_s,
        identical,
        diff,
        len(epochs) - len(set(epochs)),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--epochs", type=int, default=Setup.epochs)
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temp folder)")
    args = parser.parse_args()
    setup = Setup(epochs=args.epochs)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="kill-resume-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        ref = reference(setup, out)
        print(
            f"{'trial':<8} {'delay':>7} {'killed':>6} {'last.pt':>8} {'temps':>5} "
            f"{'resume':>7} {'repeated':>8}  result"
        )
        trials = []
        for i in range(args.trials):
            t = kill_and_resume(setup, out, f"trial{i}", rng.random(), ref)
            trials.append(t)
            result = "identical" if t.identical else f"DIFFERS (max {t.max_abs_diff:.3g})"
            print(
                f"{t.name:<8} {t.delay_s:>6.2f}s {'yes' if t.killed else 'no':>6} "
                f"{'epoch ' + str(t.epoch_at_kill):>8} {t.temps_at_kill:>2}→{t.temps_after:<2} "
                f"{t.resume_s:>6.1f}s {t.repeated_rows:>8}  {result}",
                flush=True,
            )
    killed = [t for t in trials if t.killed]
    same = sum(t.identical for t in trials)
    print(
        f"\n{len(killed)}/{len(trials)} runs killed mid-run (the others had finished), "
        f"epochs at kill {sorted(t.epoch_at_kill for t in killed)}; {same}/{len(trials)} "
        f"resumed runs bit-identical to the uninterrupted one; temporary files left: "
        f"{sum(t.temps_after for t in trials)}"
    )
    return 0 if same == len(trials) and not any(t.temps_after for t in trials) else 1


if __name__ == "__main__":
    raise SystemExit(main())
