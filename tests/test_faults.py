"""Faults that must not lose work: a real SIGKILL mid-run, damaged checkpoints, a save that
fails half-way or finds the disk full (for real, through /dev/full), stale temporary files.
SIGTERM (save and exit 0 within seconds) is tested in test_train.py."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from PIL import Image

from conftest import REPO, checkpoint_weights, cli, copy_run, tiny_train
from resnetlab.cli import main
from resnetlab.runtime import checkpoint
from resnetlab.runtime.checkpoint import (
    CheckpointSaveError,
    load_checkpoint,
    remove_stale_temps,
    save_checkpoint,
)

TRAIN = tiny_train("--device", "cpu")
DEV_FULL = Path("/dev/full")  # every write fails with ENOSPC (Linux)


pytestmark = pytest.mark.usefixtures("one_thread")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kill_resume", REPO / "scripts/kill_resume.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_resume"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """A real one-epoch run (a copy of the session's tiny run, which also filled the
    session's decoded-data cache that the subprocesses below share through RESNETLAB_CACHE)."""
    return copy_run(tiny_run, tmp_path_factory.mktemp("faults"), "good")


# ---------------------------------------------------------------- kill -9, then --resume
@pytest.mark.slow  # about 8-12 s on a busy 2-core CPU: one real process start, one kill
def test_sigkill_at_a_random_moment_then_resume_gives_the_same_weights(
    tmp_path: Path, run_dir: Path
) -> None:
    """A real SIGKILL (no handler runs) somewhere after the first checkpoint; `train
    --resume` finishes the run with weights bit-identical to an uninterrupted run's.
    RESNETLAB_KILL_SEED picks another moment; scripts/kill_resume.py runs many, each in
    its own processes (here the reference and the resumed run run in-process, for speed)."""
    kr = _script()
    setup = kr.Setup(epochs=4)
    seed = int(os.environ.get("RESNETLAB_KILL_SEED", "0"))
    # Within epoch 3 (the kill is timed from epoch 2, past the first epoch's warm-up).
    fraction = 0.05 + 0.5 * random.Random(seed).random()
    kill = kr.start_and_kill(setup, tmp_path, "killed", fraction)
    assert kill.killed, f"the run finished before the kill ({kill})"
    assert 1 <= kill.epoch < setup.epochs, kill
    run = tmp_path / "killed"
    assert main(["train", "--resume", str(run)]) == 0
    assert main(setup.command(tmp_path, "reference")[3:]) == 0  # after `python -m resnetlab`
    identical, diff = kr.compare(tmp_path / "reference" / "last.pt", run / "last.pt")
    assert identical, f"resumed weights differ by up to {diff}"
    assert not list(run.glob(".*.tmp"))
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["epoch"] == setup.epochs


@pytest.mark.slow  # about 12 s on a busy 2-core CPU: three process starts
def test_kill_resume_script_runs_as_documented(tmp_path: Path) -> None:
    """scripts/kill_resume.py itself, one trial, as docs/bad-input.md runs it: the evidence
    for "kill -9 at random points resumes bit-identical" must keep running (it once crashed
    splitting metrics.jsonl on whitespace before its first verdict)."""
    script = [sys.executable, str(REPO / "scripts/kill_resume.py"), "--trials", "1"]
    args = ["--epochs", "3", "--seed", "0", "--out", str(tmp_path)]
    done = subprocess.run(script + args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1/1 resumed runs bit-identical" in done.stdout, done.stdout
    assert "temporary files left: 0" in done.stdout, done.stdout


# ---------------------------------------------------------------- run-folder ownership
@pytest.mark.slow  # about 8 s: one real training process
def test_two_runs_with_one_name_the_second_gets_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two processes, one --name: the second is refused while the first runs (it used to
    train into the same folder, interleaving metrics rows and overwriting checkpoints), and
    the first run's files are its own."""
    kr = _script()
    setup = kr.Setup()  # 5 epochs: the second process is refused long before they end
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    first = subprocess.Popen(setup.command(tmp_path, "same"), env=kr.environment(), **pipe)
    try:
        assert first.stdout is not None
        for line in first.stdout:
            if line.startswith("run "):  # the folder is owned, the model built
                break
        code, _, err = cli(capsys, *setup.command(tmp_path, "same")[3:])
        assert code == 2, err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"is in use by another process (pid {first.pid})" in err, err
        rest = first.stdout.read()
        assert first.wait(timeout=300) == 0, rest
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    rows = (tmp_path / "same" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert not (tmp_path / "same" / ".resnetlab.lock").exists()  # released at the end


def test_a_dead_owner_does_not_block_and_a_dead_run_is_cleared_only_when_asked(
    tmp_path: Path,
) -> None:
    """A lock file left by a killed process (its pid inside, no flock held) is taken over;
    clear_dead_run (the run store's restart) removes the logs of a run with no checkpoint
    and refuses a folder that holds one."""
    from resnetlab.fileio import FolderBusyError, folder_lock
    from resnetlab.runtime.config import ConfigError
    from resnetlab.train.start_or_resume import clear_dead_run

    run = tmp_path / "run"
    run.mkdir()
    (run / ".resnetlab.lock").write_text("999999\n")  # kill -9 leaves the file, not the lock
    busy = pytest.raises(FolderBusyError, match=f"pid {os.getpid()}")
    with folder_lock(run), busy, folder_lock(run):
        pass
    for name in ("config.yaml", "metrics.csv", "steps.csv"):
        (run / name).write_text("old\n")
    (run / "notes.txt").write_text("mine\n")
    assert sorted(clear_dead_run(run)) == ["config.yaml", "metrics.csv", "steps.csv"]
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    (run / "last.pt").write_bytes(b"a checkpoint")
    with pytest.raises(ConfigError, match="holds a checkpoint"):
        clear_dead_run(run)
    assert (run / "last.pt").read_bytes() == b"a checkpoint"


# ---------------------------------------------------------------- damaged checkpoints
def _damage(kind: str, good: bytes, target: Path) -> None:
    if kind == "truncated":
        target.write_bytes(good[: len(good) // 2])
    elif kind == "random-bytes":
        target.write_bytes(random.Random(0).randbytes(len(good)))
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "bit-flip":  # inside a tensor's bytes: torch.load alone would not notice
        flipped = bytearray(good)
        flipped[len(good) // 2] ^= 0x10
        target.write_bytes(bytes(flipped))
    elif kind == "foreign-torch-file":
        torch.save({"state_dict": {"w": torch.zeros(3)}}, target)
    elif kind == "pickled-model":  # loading it would run code: refused
        torch.save(torch.nn.Linear(2, 2), target)
    else:
        raise AssertionError(kind)


DAMAGE = ["truncated", "random-bytes", "empty", "bit-flip", "foreign-torch-file", "pickled-model"]
COMMANDS = ["train-resume", "eval", "predict", "export"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_checkpoint_is_one_line_naming_the_file(
    kind: str, command: str, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_run = tmp_path / "run"
    bad_run.mkdir()
    ckpt = bad_run / "last.pt"
    _damage(kind, (run_dir / "last.pt").read_bytes(), ckpt)
    before = _sha(ckpt)
    image = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), (200, 100, 50)).save(image)
    exported = tmp_path / "model.safetensors"
    argv = {
        "train-resume": ["train", "--resume", str(bad_run)],
        "eval": ["eval", str(ckpt)],
        "predict": ["predict", str(ckpt), str(image)],
        "export": ["export", str(ckpt), "-o", str(exported)],
    }[command]
    code, out, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"resnetlab {argv[0]}: error: "), lines[0]
    assert str(ckpt) in lines[0]
    assert "Traceback" not in out + err
    assert _sha(ckpt) == before
    assert not exported.exists()
    assert sorted(p.name for p in bad_run.iterdir()) == ["last.pt"]  # nothing else written


def test_damaged_checkpoint_in_a_real_process(run_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "last.pt"
    _damage("truncated", (run_dir / "last.pt").read_bytes(), bad)
    done = subprocess.run(
        [sys.executable, "-m", "resnetlab", "eval", str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"resnetlab eval: error: cannot read checkpoint {bad}: truncated or damaged "
        "(not a complete zip archive)"
    ]


# ---------------------------------------------------------------- failing saves
@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, str]:
    target = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1, "w": torch.arange(1000.0)}, target)
    return target, _sha(target)


def _write_half_then(exc: BaseException) -> Any:
    """A torch.save that writes half of the real bytes, then fails."""
    real = torch.save

    def save(obj: object, f: Any) -> None:
        import io

        buf = io.BytesIO()
        real(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        raise exc

    return save


def test_a_save_failing_mid_write_keeps_the_old_file(
    saved: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, digest = saved
    monkeypatch.setattr(torch, "save", _write_half_then(RuntimeError("bug in a state_dict")))
    with pytest.raises(RuntimeError, match="bug in a state_dict"):  # not an I/O error: as is
        save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, target)
    monkeypatch.undo()
    assert _sha(target) == digest
    assert os.listdir(target.parent) == ["last.pt"]
    assert load_checkpoint(target)["epoch"] == 1


def test_disk_full_mid_write_is_a_clear_error_and_keeps_the_old_file(
    saved: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, digest = saved
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", _write_half_then(full))
    with pytest.raises(CheckpointSaveError) as info:
        save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, target)
    monkeypatch.undo()
    err = info.value
    assert err.no_space and err.errno == errno.ENOSPC and isinstance(err, OSError)
    assert str(err) == (
        f"cannot save {target}: No space left on device (the previous one is intact)"
    )
    assert _sha(target) == digest
    assert os.listdir(target.parent) == ["last.pt"]


def _dev_full_after(monkeypatch: pytest.MonkeyPatch, name: str, skip: int) -> dict[str, Any]:
    """Make the save of ``name`` after ``skip`` successful ones write to /dev/full: the
    kernel's own ENOSPC, through torch's real writer. Records the file's digest then."""
    if not DEV_FULL.exists():
        pytest.skip("no /dev/full on this system")
    real = checkpoint.make_temp
    seen: dict[str, Any] = {"saves": 0, "digest": None}

    def make_temp(target: Path, suffix: str = ".tmp") -> tuple[int, str]:
        fd, tmp = real(target, suffix)
        if target.name != name:
            return fd, tmp
        seen["saves"] += 1
        if seen["saves"] <= skip:
            return fd, tmp
        os.close(fd)  # the temporary file exists (and must be removed); its data go nowhere
        seen["digest"] = _sha(target) if target.exists() else None
        return os.open(DEV_FULL, os.O_WRONLY), tmp

    monkeypatch.setattr(checkpoint, "make_temp", make_temp)
    return seen


def test_real_disk_full_through_dev_full(
    saved: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, digest = saved
    _dev_full_after(monkeypatch, "last.pt", skip=0)
    with pytest.raises(CheckpointSaveError, match="No space left on device") as info:
        save_checkpoint({"epoch": 2, "w": torch.zeros(100_000)}, target)
    assert info.value.no_space
    assert _sha(target) == digest
    assert os.listdir(target.parent) == ["last.pt"]


def test_first_save_on_a_full_disk_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dev_full_after(monkeypatch, "best.pt", skip=0)
    with pytest.raises(CheckpointSaveError, match=r"\(nothing was written\)"):
        save_checkpoint({"epoch": 1}, tmp_path / "best.pt")
    assert os.listdir(tmp_path) == []


def test_training_stops_cleanly_on_a_full_disk_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The disk fills up at the end of epoch 2: one line, exit 2, epoch 1's last.pt intact
    and no temporary file; after space is freed, --resume ends where an uninterrupted run
    ends, bit for bit."""
    argv = [*TRAIN, "--epochs", "3", "--out", str(tmp_path)]
    assert cli(capsys, *argv, "--name", "reference")[0] == 0
    with monkeypatch.context() as m:
        seen = _dev_full_after(m, "last.pt", skip=1)
        code, _, err = cli(capsys, *argv, "--name", "full")
    run = tmp_path / "full"
    assert code == 2
    assert err.splitlines() == [
        f"resnetlab train: error: cannot save {run / 'last.pt'}: No space left on device "
        "(the previous one is intact)"
    ]
    assert seen["digest"] is not None and _sha(run / "last.pt") == seen["digest"]
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert not list(run.glob(".*.tmp"))
    code, _, err = cli(capsys, "train", "--resume", str(run))
    assert code == 0, err
    a, b = (
        checkpoint_weights(tmp_path / "reference" / "last.pt"),
        checkpoint_weights(run / "last.pt"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stale = tmp_path / f".last.pt.k3j4h5g6.{dead}.tmp"  # a kill -9 during a save
    alive = tmp_path / f".best.pt.a1b2c3d4.{os.getppid()}.tmp"  # being written right now
    other = tmp_path / ".results.json.x9y8z7w6.tmp"  # not a checkpoint's
    for p in (stale, alive, other):
        p.write_bytes(b"partial")
    assert remove_stale_temps(tmp_path) == [stale]
    save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name, "last.pt"])


def test_resume_drops_metrics_rows_logged_after_the_checkpoint(tmp_path: Path) -> None:
    from resnetlab.train.logs import read_metrics, truncate_metrics

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"epoch": e, "val_top1": 10.0 * e} for e in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"ep')
    (run / "metrics.csv").write_text("epoch,val_top1\n1,10\n2,20\n3,30\n")
    truncate_metrics(run, 2)
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert (run / "metrics.csv").read_text().splitlines() == ["epoch,val_top1", "1,10", "2,20"]
    truncate_metrics(run, 5)  # nothing to drop: unchanged
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
