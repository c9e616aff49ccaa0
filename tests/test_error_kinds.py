"""Issue 33, section 5: the environment and the input are not "a bug of resnetlab". Each
case below was an internal error (exit 1) or a raw traceback; now it is one line and exit
2 (130 for Ctrl-C), or it simply works."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import cli, copy_run, tiny_train
from resnetlab import fileio

Capture = pytest.CaptureFixture[str]
MP = pytest.MonkeyPatch


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """A real one-epoch run folder (a copy of the session's tiny run)."""
    return copy_run(tiny_run, tmp_path_factory.mktemp("kinds"))


def _python(shell: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", shell.replace("PY", f'"{sys.executable}" -m resnetlab')],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def _one_line(code: int, err: str, want: int = 2) -> str:
    lines = err.strip().splitlines()
    assert code == want and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------- the process's streams
def test_a_closed_stdout_is_one_line() -> None:
    done = _python("PY models >&-")
    line = _one_line(done.returncode, done.stderr)
    assert "standard output is closed" in line


def test_an_ascii_only_terminal_gets_escapes_not_an_error() -> None:
    done = _python("PY summary resnet20", {"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0, done.stderr
    assert "\\xd7" in done.stdout  # the × of "32×32", escaped


def test_world_size_that_is_not_a_number(tmp_path: Path, capsys: Capture, monkeypatch: MP) -> None:
    """``WORLD_SIZE=abc``: a raw traceback under ``python -m resnetlab`` (before any
    command), an internal error in ``train``."""
    done = _python("PY models 'resnet2*'", {"WORLD_SIZE": "abc"})
    assert done.returncode == 0 and "resnet20" in done.stdout, done.stderr
    monkeypatch.setenv("WORLD_SIZE", "abc")
    code, _, err = cli(capsys, *tiny_train("--epochs", "1", "--out", str(tmp_path)))
    assert "WORLD_SIZE='abc' is not a whole number" in _one_line(code, err)


def test_the_bug_handler_survives_an_empty_home(capsys: Capture, monkeypatch: MP) -> None:
    """With ``HOME=`` the handler's own cache lookup raised, and Python printed both."""
    import resnetlab.cli.inspection as inspection

    def broken(args: object) -> None:
        raise ZeroDivisionError("planted")

    for key in ("RESNETLAB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", "")
    monkeypatch.setattr(inspection, "cmd_models", broken)
    code, _, err = cli(capsys, "models")
    line = _one_line(code, err, want=1)
    assert "bug of resnetlab" in line and f"the traceback is in {tempfile.gettempdir()}" in line
    Path(line.rsplit("the traceback is in ", 1)[1]).unlink()


# ---------------------------------------------------------------- options and data
def test_device_meta_is_refused_before_the_run_folder(tmp_path: Path, capsys: Capture) -> None:
    """``--device meta`` was an internal error that left a config.yaml blocking the name."""
    argv = tiny_train("--epochs", "1", "--out", str(tmp_path), "--name", "m", "--device", "meta")
    code, _, err = cli(capsys, *argv)
    assert "run.device must be auto, cpu or cuda" in _one_line(code, err)
    assert list(tmp_path.iterdir()) == []


def test_landscape_span_1e300(tmp_path: Path, capsys: Capture) -> None:
    code, _, err = cli(capsys, "reproduce", "landscape", "--span", "1e300", "--out", str(tmp_path))
    assert "up to 1000, got 1e+300" in _one_line(code, err)


def test_metrics_with_invalid_utf8_resume(run: Path, tmp_path: Path, capsys: Capture) -> None:
    """A damaged byte in ``metrics.jsonl`` made ``--resume`` an internal error."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    with (copy / "metrics.jsonl").open("ab") as f:
        f.write(b'{"epoch": 9, "note": "\xff\xfe"}\n')
    code, _, err = cli(capsys, "train", "--resume", str(copy), "--epochs", "2")
    assert code == 0, err


# ---------------------------------------------------------------- crafted checkpoints
def _crafted(run: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    from resnetlab.runtime.checkpoint import load_checkpoint

    state = load_checkpoint(run / "last.pt")
    change(state)
    out = tmp_path / "crafted.pt"
    torch.save(state, out)
    return out


def _extra_class(s: dict[str, Any]) -> None:
    s["classes"] = [*s["classes"], "unicorn"]


def _extra_key(s: dict[str, Any]) -> None:
    s["model"]["surprise.weight"] = torch.zeros(3)


def _size(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["preprocess"].__setitem__("image_size", n)


def _channels(s: dict[str, Any]) -> None:
    s["data_size"] = [1, 32, 32]
    s["preprocess"]["mean"], s["preprocess"]["std"] = [0.5], [0.25]


CRAFTED = {
    "class-list-longer": (_extra_class, "do not fit resnet20 with 11 classes"),
    "extra-weight-key": (_extra_key, "surprise.weight"),
    "one-channel": (_channels, "do not fit resnet20 with 10 classes and 1 channels"),
    "image-size-0": (_size(0), "input size 0 is outside 1–4096"),
    "image-size-negative": (_size(-5), "input size -5 is outside"),
    "image-size-huge": (_size(30000), "input size 30000 is outside"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_checkpoint_fields(case: str, run: Path, tmp_path: Path, capsys: Capture) -> None:
    from PIL import Image

    change, needle = CRAFTED[case]
    bad = _crafted(run, tmp_path, change)
    image = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), (200, 30, 40)).save(image)
    code, _, err = cli(capsys, "predict", str(bad), str(image))
    assert needle in _one_line(code, err)


# ---------------------------------------------------------------- Ctrl-C, read-only
def test_ctrl_c_inside_torch_export_is_130(
    run: Path, tmp_path: Path, capsys: Capture, monkeypatch: MP
) -> None:
    """torch.export wraps the KeyboardInterrupt in its own error: it was exit 1."""
    from resnetlab.infer import engines

    def interrupted(*_a: Any, **_k: Any) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise RuntimeError("Failed to export the model with torch.export") from err

    monkeypatch.setattr(engines, "export_onnx", interrupted)
    code, _, err = cli(capsys, "export", str(run / "last.pt"), "-o", str(tmp_path / "m.onnx"))
    assert _one_line(code, err, want=130) == "resnetlab export: interrupted"
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_file_system_is_not_permission_denied(tmp_path: Path, monkeypatch: MP) -> None:
    class ReadOnly:
        f_flag = os.ST_RDONLY
        f_bavail = f_frsize = 1 << 20

    monkeypatch.setattr(os, "access", lambda *_a, **_k: False)
    monkeypatch.setattr(os, "statvfs", lambda _p: ReadOnly())
    with pytest.raises(fileio.OutputError, match="read-only file system"):
        fileio.check_writable(tmp_path / "out.txt")
    monkeypatch.undo()

    def refuse(*_a: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(fileio, "_fsync_file", refuse)
    with pytest.raises(fileio.WriteError, match=r"out.txt: read-only file system \(nothing"):
        fileio.write_text_atomic(tmp_path / "out.txt", "x")
