"""Issue 33, section 2: no file lost or half-written. Every writer goes through
``fileio.atomic_path`` (or ``atomic_pair`` for an OpenVINO IR): a temporary beside the
target, fsynced, renamed; a failure leaves the old file and no temporary; a killed
writer's temporary is removed by the next write of the same target; names up to the file
system's 255 bytes work and longer ones are refused before any work."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import cli, copy_run
from resnetlab import fileio

Capture = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """A real one-epoch ResNet-20 checkpoint (a copy of the session's tiny run)."""
    return copy_run(tiny_run, tmp_path_factory.mktemp("atomic")) / "last.pt"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _no_space(*_a: Any, **_k: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _write_with(target: Path, write: Any) -> None:
    with fileio.atomic_path(target) as tmp:
        write(tmp)


# ---------------------------------------------------------------- the one write path
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    monkeypatch.setattr(fileio, "_fsync_file", _no_space)
    with pytest.raises(fileio.WriteError, match=f"cannot write {target}: no space left") as e:
        fileio.write_text_atomic(target, "new")
    assert e.value.errno == errno.ENOSPC and "previous one is intact" in str(e.value)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_ctrl_c_inside_a_write_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"

    def interrupted(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write_with(target, interrupted)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """A crashed quantize / ONNX export left a hidden ``.X.tmp`` that nothing removed."""
    target = tmp_path / "model.pt2"
    stale = tmp_path / f".model.pt2.abcd1234.{_dead_pid()}.tmp"
    stale.write_bytes(b"x" * 1000)
    stale_dir = tmp_path / f".model.pt2.efgh5678.{_dead_pid()}.tmp"  # an IR pair's folder
    stale_dir.mkdir()
    (stale_dir / "model.bin").write_bytes(b"y")
    live = tmp_path / f".model.pt2.ijkl9012.{os.getppid()}.tmp"  # a live writer's: kept
    live.write_bytes(b"z")
    other = tmp_path / ".notes.txt.tmp"  # not ours
    other.write_bytes(b"w")
    fileio.write_bytes_atomic(target, b"new")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([target.name, live.name, other.name])


@pytest.mark.parametrize("size", [250, 255])
def test_output_names_up_to_255_bytes_work(size: int, tmp_path: Path, capsys: Capture) -> None:
    """The temporary's name used to be the target's plus 9 bytes: a 250-byte output failed."""
    name = "m" * (size - 4) + ".txt"
    code, out, err = cli(capsys, "models", "resnet2*", "-o", str(tmp_path / name))
    assert code == 0, err
    assert (tmp_path / name).stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_name_over_255_bytes_is_refused_before_any_work(
    ckpt: Path, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resnetlab.infer import export

    def no_work(*_a: Any, **_k: Any) -> None:
        raise AssertionError("the model was loaded before the name was checked")

    monkeypatch.setattr(export, "_graph_source", no_work)
    name = "m" * 252 + ".onnx"  # 257 bytes
    code, out, err = cli(capsys, "export", str(ckpt), "-o", str(tmp_path / name))
    assert code == 2 and err.count("\n") == 1, err
    assert "its name is 257 bytes, over the file system's limit of 255" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- same file in and out
@pytest.mark.parametrize("how", ["same path", "dotted path", "symlink", "hard link"])
def test_export_refuses_to_overwrite_its_input(
    how: str, ckpt: Path, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``export best.pt --format safetensors -o best.pt`` replaced the training checkpoint
    with safetensors bytes (exit 0)."""
    src = tmp_path / "best.pt"
    src.write_bytes(ckpt.read_bytes())
    monkeypatch.chdir(tmp_path)
    out = {"same path": src, "dotted path": Path("./best.pt")}.get(how, tmp_path / "other.pt")
    if how == "symlink":
        out.symlink_to(src)
    elif how == "hard link":
        os.link(src, out)
    before = src.read_bytes()
    code, _, err = cli(capsys, "export", str(src), "--format", "safetensors", "-o", str(out))
    assert code == 2 and err.count("\n") == 1, err
    assert "it is the input" in err
    assert src.read_bytes() == before


# ---------------------------------------------------------------- OpenVINO IR pair
class _FakeOV:
    """The two calls of OpenVINO's API that export uses; ``save_model`` writes an .xml and
    its .bin the way OpenVINO does, and can fail between the two (a full disk)."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def PartialShape(self, dims: Any) -> Any:  # noqa: N802 - OpenVINO's name
        return dims

    def save_model(self, model: Any, path: str, compress_to_fp16: bool) -> None:
        xml = Path(path)
        xml.write_text("<net>new</net>")
        with xml.with_suffix(".bin").open("wb") as f:
            f.write(b"\0" * 100)
            if self.fail:
                raise RuntimeError("basic_ios::clear: iostream error")


class _FakeModel:
    def reshape(self, shape: Any) -> None:
        pass

    def set_rt_info(self, value: Any, key: Any) -> None:
        pass


@pytest.mark.parametrize("fail", [False, True])
def test_openvino_pair_is_swapped_only_when_both_are_complete(
    fail: bool, ckpt: Path, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ov.save_model(target)`` in place: a full disk left a 0-byte .xml and half a .bin
    (exit 1, "basic_ios::clear"). Now both go to a temporary folder and are renamed when
    complete; a failure (here with the disk nearly full) is one line naming the file."""
    from resnetlab.infer import engines

    monkeypatch.setattr(engines, "_openvino", lambda: _FakeOV(fail))
    monkeypatch.setattr(engines, "openvino_model", lambda net, x: _FakeModel())
    monkeypatch.setattr(fileio, "_nearly_full", lambda folder: True)
    xml, bin_ = tmp_path / "model.xml", tmp_path / "model.bin"
    xml.write_text("<net>old</net>")
    bin_.write_bytes(b"old weights")
    code, _, err = cli(capsys, "export", str(ckpt), "-o", str(xml))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model.bin", "model.xml"]  # no temporary folder
    if fail:
        assert code == 2 and err.count("\n") == 1, err
        assert f"cannot write {xml}: no space left on device" in err
        assert xml.read_text() == "<net>old</net>" and bin_.read_bytes() == b"old weights"
    else:
        assert code == 0, err
        assert xml.read_text() == "<net>new</net>" and bin_.read_bytes() == b"\0" * 100


# ---------------------------------------------------------------- Grad-CAM pictures
def _image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), (200, 30, 40)).save(path)
    return path


def test_gradcam_into_a_fifo_is_one_line(ckpt: Path, tmp_path: Path, capsys: Capture) -> None:
    pytest.importorskip("captum")
    image = _image(tmp_path)
    out = tmp_path / "cams"
    out.mkdir()
    os.mkfifo(out / "cat.gradcam.png")
    code, _, err = cli(capsys, "predict", str(ckpt), str(image), "--explain", str(out))
    assert code == 2 and err.count("\n") == 1, err
    assert "it is a named pipe, not a file" in err


def test_gradcam_on_a_full_disk_keeps_the_old_picture(
    ckpt: Path, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk replaced a valid heatmap with a truncated one."""
    pytest.importorskip("captum")
    image = _image(tmp_path)
    out = tmp_path / "cams"
    out.mkdir()
    png = out / "cat.gradcam.png"
    png.write_bytes(b"old picture")
    monkeypatch.setattr(fileio, "_fsync_file", _no_space)
    code, _, err = cli(capsys, "predict", str(ckpt), str(image), "--explain", str(out))
    assert code == 2 and err.count("\n") == 1, err
    assert f"cannot write {png}: no space left on device" in err
    assert png.read_bytes() == b"old picture"
    assert [p.name for p in out.iterdir()] == [png.name]
