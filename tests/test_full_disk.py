"""Issue 33: a full disk over every command that writes. Each command is run once to
leave its files, then again with the disk "full" at its k-th file write (an ``os.fsync``
of a file in the working folder raising ENOSPC, for every k), and once with a real
file-size limit of 0 bytes (``RLIMIT_FSIZE``: every writer's own ``write()`` fails with
EFBIG, OpenVINO's C++, safetensors' Rust and PIL's C alike). Every time: exit 2, one line
naming a file, no temporary file left, and every file that was there before is unchanged,
replaced whole (a rename), or only appended to (a metrics log)."""

from __future__ import annotations

import errno
import logging
import os
import resource
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import copy_run
from resnetlab.cli import main
from test_atomic_writes import _FakeModel, _FakeOV

Capture = pytest.CaptureFixture[str]
MP = pytest.MonkeyPatch
TINY = ["--data", "sample", "--iterations", "4", "--batch-size", "32"]
TINY += ["--limit-per-class", "12", "--precision", "fp32"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> dict[str, Path]:
    """A one-epoch run (a copy of the session's tiny run), an image, and a reproduce store
    with one finished run."""
    from PIL import Image

    root = tmp_path_factory.mktemp("full")
    copy_run(tiny_run, root)
    with pytest.MonkeyPatch.context() as m:
        m.setenv("RESNETLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        table = ["reproduce", "cifar-table", "--depths", "20", "--seeds", "0", *TINY]
        assert main([*table, "--out", str(root / "store")]) == 0
    Image.new("RGB", (32, 32), (200, 30, 40)).save(root / "cat.png")
    return {"run": root / "run", "ckpt": root / "run" / "last.pt", "img": root / "cat.png",
            "store": root / "store"}  # fmt: skip


# command → (argv, what the failing run meets: "run" = the files a first successful run
# left; a file name = that file, made with old bytes (the slow commands); "" = nothing)
REPORT = ["reproduce", "cifar-table", "--depths", "20", "--seeds", "0", *TINY, "--report-only"]
COMMANDS: dict[str, tuple[list[str], str]] = {
    "models": (["models", "resnet2*", "-o", "{w}/models.txt"], "run"),
    "plot-png": (["plot", "resnet20", "-o", "{w}/chart.png"], "run"),
    "plot-svg": (["plot", "resnet20", "-o", "{w}/chart.svg"], "run"),
    "export-onnx": (["export", "{ckpt}", "-o", "{w}/m.onnx"], "m.onnx"),
    "export-safetensors": (["export", "{ckpt}", "-o", "{w}/m.safetensors"], "run"),
    "export-openvino": (["export", "{ckpt}", "-o", "{w}/m.xml"], "run"),
    "quantize": (["quantize", "{ckpt}", "-o", "{w}/m.pt2", "--calibration", "8"], "m.pt2"),
    "eval": (["eval", "{ckpt}", "--split", "val", "--out", "{w}/eval"], "run"),
    "predict-explain": (["predict", "{ckpt}", "{img}", "--explain", "{w}/cams"], "run"),
    "train-resume": (["train", "--resume", "{w}/run", "--epochs", "2"], ""),
    "reproduce-report": ([*REPORT, "--out", "{w}/store"], "run"),
}
# Seconds a run: the failure is put at the first and the last write only (one file each
# for the exports, whose single write is then the only one).
SLOW = {"export-onnx", "quantize", "train-resume", "reproduce-report", "eval"}


class Disk:
    """``os.fsync`` that fails with ENOSPC at the ``fail_at``-th regular file under
    ``root`` (counting from 0; None: never), and records every file renamed into place."""

    def __init__(self, root: Path, fail_at: int | None) -> None:
        self.root, self.fail_at, self.count = str(root), fail_at, 0
        self.renamed: set[str] = set()
        self._fsync, self._replace = os.fsync, os.replace

    def fsync(self, fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode) and os.readlink(f"/proc/self/fd/{fd}").startswith(
            self.root
        ):
            self.count += 1
            if self.count - 1 == self.fail_at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._fsync(fd)

    def replace(self, src: Any, dst: Any) -> None:
        self._replace(src, dst)
        self.renamed.add(os.path.realpath(dst))


def _setup(name: str, made: dict[str, Path], work: Path, m: pytest.MonkeyPatch) -> list[str]:
    from resnetlab.infer import engines

    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    if name == "train-resume":
        shutil.copytree(made["run"], work / "run")
    if name == "reproduce-report":
        shutil.copytree(made["store"] / "runs", work / "store" / "runs")
    if name == "export-openvino":
        m.setattr(engines, "_openvino", lambda: _FakeOV(False))
        m.setattr(engines, "openvino_model", lambda net, x: _FakeModel())
    if name == "quantize":
        pytest.importorskip("torchao")
    if name == "predict-explain":
        pytest.importorskip("captum")
    if name == "export-onnx":
        pytest.importorskip("onnxscript")
    seed = COMMANDS[name][1]
    if seed not in ("", "run"):
        (work / seed).write_bytes(b"old")
    keys = {"w": str(work), "ckpt": str(made["ckpt"]), "img": str(made["img"])}
    return [a.format(**keys) for a in COMMANDS[name][0]]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _run(argv: list[str], capsys: Capture, limit: Callable[[], None] | None = None) -> tuple:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        if limit is not None:
            limit()
        code = main(argv)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    out, err = capsys.readouterr()
    return code, out, err


def _check(code: int, err: str, argv: list[str], work: Path, before: dict[str, bytes],
           renamed: set[str], reason: str) -> None:  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"resnetlab {argv[0]}: error: "), lines[0]
    assert reason in lines[0].lower(), lines[0]
    # the file: ours, or torch's compiler cache (quantize compiles before it writes)
    assert str(work) in lines[0] or "torch's compiler cache in" in lines[0], lines[0]
    assert not [p for p in work.rglob("*") if p.name.endswith(".tmp")], "temporaries left"
    after = _files(work)
    for path, old in before.items():
        new = after.get(path)
        assert new is not None, f"{path} was deleted"
        assert new == old or path in renamed or new.startswith(old), f"{path} was damaged"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_full_disk_at_each_write_loses_nothing(
    name: str, made: dict[str, Path], tmp_path: Path, capsys: Capture, monkeypatch: MP
) -> None:
    work = tmp_path / "w"
    argv = _setup(name, made, work, monkeypatch)
    writes = [0]  # the seeded slow commands write one file
    if COMMANDS[name][1] == "run":
        counter = Disk(work, None)
        monkeypatch.setattr(os, "fsync", counter.fsync)
        code, _, err = _run(argv, capsys)
        assert code == 0 and counter.count > 0, err
        writes = list(range(counter.count))
    elif name == "train-resume":  # counted on a copy: a run resumes once
        counter = Disk(work, None)
        monkeypatch.setattr(os, "fsync", counter.fsync)
        code, _, err = _run(argv, capsys)
        assert code == 0 and counter.count > 0, err
        writes = list(range(counter.count))
        argv = _setup(name, made, work, monkeypatch)
    before = _files(work)
    for k in sorted({writes[0], writes[-1]}) if name in SLOW else writes:
        _setup(name, made, work, monkeypatch)
        for path, data in before.items():  # the files the failing run meets, as they were
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
        disk = Disk(work, k)
        monkeypatch.setattr(os, "fsync", disk.fsync)
        monkeypatch.setattr(os, "replace", disk.replace)
        code, _, err = _run(argv, capsys)
        monkeypatch.setattr(os, "replace", disk._replace)
        assert disk.count > k, f"write {k} never came: {err}"
        _check(code, err, argv, work, before, disk.renamed, "no space left on device")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_file_size_limit_fails_every_writer_in_one_line(
    name: str, made: dict[str, Path], tmp_path: Path, capsys: Capture, monkeypatch: MP
) -> None:
    """A real failed ``write()`` (EFBIG under ``ulimit -f 0``; Python ignores SIGXFSZ) in
    each command's own writer, C++ and Rust ones included."""
    work = tmp_path / "w"
    argv = _setup(name, made, work, monkeypatch)
    if COMMANDS[name][1] == "run":
        code, _, err = _run(argv, capsys)
        assert code == 0, err
    before = _files(work)
    # pytest's own capture of logging writes to a regular file, which the limit fails too
    monkeypatch.setattr(logging, "raiseExceptions", False)

    def limit() -> None:
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))

    code, _, err = _run(argv, capsys, limit)
    _check(code, err, argv, work, before, set(), "file too large")
