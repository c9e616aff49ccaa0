"""Writing files so that an existing file is never lost or left half-written."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from resnetlab.errors import (
    InvalidValueError,
    OutputError,
    ResnetlabError,
    find_cause,
    first_line,
)
from resnetlab.locking import LOCK_NAME as LOCK_NAME
from resnetlab.locking import FolderBusyError as FolderBusyError
from resnetlab.locking import folder_lock as folder_lock

_SPECIAL = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    """What a file that is not a regular one is, in words."""
    return next((word for test, word in _SPECIAL if test(mode)), "a special file")


NAME_MAX = 255  # bytes in one file name on every Linux file system we write to
_ROOM = 32  # bytes a temporary's name adds to (a prefix of) the target's: ".", ".", 8, pid, ".tmp"


class WriteError(OutputError):
    """A file could not be written (disk full, quota, read-only file system, I/O error);
    the previous file at that path, if any, is untouched and no temporary file is left.
    ``errno`` is the failure's (``errno.ENOSPC`` for a full disk): the environment, not a
    bug, so the command exits 2 with one line naming the file."""

    errno: int | None = None


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Raise ``ValueError`` (one line) unless ``path`` can be written as a file; returns
    the file to write. A symlink is followed, deliberately: the file it points to is
    replaced and the link stays a link (a rename over the link itself would turn it into a
    regular file). A target that exists but is not a regular file — a device such as
    ``/dev/null``, a named pipe, a socket — is refused: the atomic rename would replace the
    node itself (as root, destroy ``/dev/null``). A name longer than the file system allows
    is refused here, before any work, not by the write at the end."""
    p = Path(path)
    size, limit = len(os.fsencode(p.name)), _name_max(p.parent if p.parent.is_dir() else Path("."))
    if size > limit:  # before anything looks the name up (ENAMETOOLONG, naming no file)
        raise OutputError(
            f"cannot write {path}: its name is {size} bytes, over the file system's limit "
            f"of {limit}"
        )
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    folder = p.parent if str(p.parent) else Path(".")
    if p.exists() and not p.is_dir() and not p.is_file():
        raise OutputError(f"cannot write {path}: it is {_kind(p.stat().st_mode)}, not a file")
    if not folder.is_dir():
        raise OutputError(f"cannot write {p}: folder {folder} does not exist")
    if p.is_dir():
        raise OutputError(f"cannot write {p}: it is a folder")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        why = "read-only file system" if _read_only(folder) else "permission denied"
        raise OutputError(f"cannot write {p}: {why}")
    return p


def check_folder(path: str | os.PathLike[str]) -> Path:
    """Raise ``ValueError`` (one line) unless ``path`` is a writable folder or can be
    created as one: checked before a long job starts, not when its first file is due."""
    p = Path(path).expanduser()
    probe = p
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot write to {p}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only(probe) else "permission denied"
        raise OutputError(f"cannot write to {p}: {why}")
    return p


def refuse_same_file(out: str | os.PathLike[str], *inputs: str | os.PathLike[str]) -> None:
    """Refuse (one line) an output that is one of the command's inputs: the same path once
    resolved (``./best.pt``, a symlink to it) or the same file under another name (a hard
    link). Writing it would replace the input the command is still reading."""
    for src in inputs:
        same = os.path.realpath(out) == os.path.realpath(src)
        with contextlib.suppress(OSError):  # one of them does not exist: not the same file
            same = same or os.path.samefile(out, src)
        if same:
            raise OutputError(
                f"cannot write {out}: it is the input {src}; name another output file"
            )


def _temp_prefix(target: Path) -> str:
    """``.NAME.`` with NAME cut so that a temporary's whole name stays within NAME_MAX
    (a 255-byte output name used to fail on its temporary's 263-byte one)."""
    raw = os.fsencode(target.name)[: _name_max(target.parent) - _ROOM]
    return f".{os.fsdecode(raw)}."


def remove_stale_temps_of(target: Path) -> None:
    """Remove ``target``'s temporary files and folders (``.NAME.XXXXXXXX.PID.tmp``) whose
    writer no longer exists: what a ``kill -9`` during a write leaves. Every atomic write
    calls this for its target; a temporary of a live process is left alone."""
    prefix = _temp_prefix(target)
    try:
        entries = [e for e in os.scandir(target.parent) if e.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        pid = entry.name.removesuffix(".tmp").rpartition(".")[2]
        if not entry.name.endswith(".tmp") or not pid.isdigit() or len(pid) > 9:
            continue
        if int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # tidying up must not fail a write
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, but another user's process
        pass
    return True


def make_temp(target: Path, suffix: str | None = None) -> tuple[int, str]:
    """A temporary file beside ``target`` (``.NAME.XXXXXXXX.PID.tmp``, the writer's pid in
    the name so that a later write can tell a killed writer's leftover from a live one),
    with the permissions a new file would get (``mkstemp`` makes them 0600, which would
    leave charts and checkpoints unreadable to others after the rename). Stale temporaries
    of ``target`` are removed first."""
    remove_stale_temps_of(target)
    end = f".{os.getpid()}.tmp" if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=end, dir=target.parent)
    set_new_file_mode(tmp)
    return fd, tmp


def set_new_file_mode(path: str | os.PathLike[str]) -> None:
    """The mode a new file gets under the umask (0666 & ~umask): for files a library wrote
    its own way (safetensors' ``save_file`` recreates its file 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system or the process's file-size limit",
    errno.EROFS: "read-only file system",
}


def _nearly_full(folder: Path) -> bool:
    """Under 1 MiB left on ``folder``'s file system: how a C++ writer's failed write with
    no errno (OpenVINO: "basic_ios::clear") is told apart from a bug."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def _write_error(target: Path, err: BaseException, kept: bool) -> WriteError | None:
    """The one-line :class:`WriteError` for a failed write of ``target``, or None when
    ``err`` is not the environment's (a bug, Ctrl-C: re-raised as it is)."""
    if not isinstance(err, Exception) or isinstance(err, ResnetlabError):
        return None
    cause = find_cause(err, OSError)
    rust = re.search(r"\(os error (\d+)\)", str(err))  # safetensors' Rust I/O errors
    guessed = isinstance(err, RuntimeError) and _nearly_full(target.parent)  # C++ writers
    if cause is None and rust is None and not guessed:
        return None
    code = cause.errno if cause else int(rust.group(1)) if rust else errno.ENOSPC
    reason = _REASONS.get(code or 0) or (cause.strerror if cause else None) or first_line(err)
    left = "the previous one is intact" if kept else "nothing was written"
    error = WriteError(f"cannot write {target}: {reason.lower()} ({left})")
    error.errno = code
    return error


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # where a full disk shows on file systems that allocate late (NFS, XFS)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """The one way resnetlab writes a file: yields a temporary path beside ``path`` (same
    folder, so the rename cannot cross file systems) for a writer that wants a path
    (matplotlib, PIL, safetensors); when the block ends it is fsynced and renamed over
    ``path``, so readers see the old file or the new one, never a mix. On any exception
    (Ctrl-C included) the temporary is removed; a failed write (full disk, quota,
    read-only) becomes a one-line :class:`WriteError` naming ``path``."""
    p = check_writable(path)
    tmp = ""
    try:
        fd, tmp = make_temp(p)
        os.close(fd)
        yield Path(tmp)
        _fsync_file(tmp)
        os.replace(tmp, p)
    except BaseException as err:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        failed = _write_error(p, err, p.is_file())
        if failed is None:
            raise
        raise failed from err
    _fsync_folder(p.parent)


@contextmanager
def appending(path: str | os.PathLike[str]) -> Iterator[None]:
    """Around appends to a log (``metrics.csv``): a failed write (a full disk) becomes the
    one-line :class:`WriteError` naming the file, where Python's ``OSError`` names none.
    The rows written before stay; a row cut short is skipped by the readers."""
    try:
        yield
    except OSError as err:
        failed = _write_error(Path(path), err, True)
        if failed is None:
            raise
        raise WriteError(str(failed).replace("the previous one", "its earlier lines")) from err


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_image_atomic(image: Any, path: str | os.PathLike[str], *, format: str = "PNG") -> Path:
    """Save a PIL image through :func:`atomic_path` (a full disk or a ``kill -9`` used to
    leave a truncated or empty PNG in place of a good one)."""
    with atomic_path(path) as tmp:
        image.save(tmp, format=format)
    return Path(path)


@contextmanager
def atomic_pair(first: Path, second: Path) -> Iterator[Path]:
    """Two files that belong together (an OpenVINO IR: ``.bin`` weights, ``.xml`` graph)
    replaced only when both are complete. Yields a temporary folder beside ``second``
    (``.NAME.XXXXXXXX.PID.tmp``) for the writer to fill with ``first.name`` and
    ``second.name``; then both are fsynced and renamed over the targets, ``first`` then
    ``second``. A failure before the renames leaves both old files untouched; only a
    crash between the two renames (no data is written there, two system calls) can leave
    the new ``first`` beside the old ``second``. The folder is removed in every case."""
    a, b = check_writable(first), check_writable(second)
    remove_stale_temps_of(b)
    folder = Path(
        tempfile.mkdtemp(prefix=_temp_prefix(b), suffix=f".{os.getpid()}.tmp", dir=b.parent)
    )
    try:
        yield folder
        for name in (a.name, b.name):
            _fsync_file(folder / name)
            set_new_file_mode(folder / name)
        os.replace(folder / a.name, a)
        os.replace(folder / b.name, b)
    except BaseException as err:
        failed = _write_error(b, err, b.is_file())
        if failed is None:
            raise
        raise failed from err
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _fsync_folder(b.parent)


def pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend (chosen when first needed, so that
    importing resnetlab changes no global state)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Save a matplotlib figure through :func:`atomic_path`: an existing chart is replaced
    whole or not at all. The format follows the suffix (.png, .svg); symlinks and special
    files as in :func:`check_writable`."""
    p = Path(path)
    with atomic_path(p) as tmp:
        fig.savefig(tmp, format=p.suffix[1:].lower() or "png", dpi=dpi, bbox_inches="tight")
    return check_writable(p)


def cache_root() -> Path:
    """Where resnetlab caches downloads and decoded data: ``$RESNETLAB_CACHE``, else
    ``$XDG_CACHE_HOME/resnetlab``, else ``~/.cache/resnetlab``.

    An empty or relative ``XDG_CACHE_HOME`` is ignored, as the XDG spec says. An empty or
    relative ``HOME`` (a cron job or service unit without one) is refused in one line:
    ``~`` would become ``/`` (``/.cache``, on the root filesystem) or the current folder."""
    env = os.environ.get("RESNETLAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "resnetlab"
    home = os.environ.get("HOME")
    if home is not None and not os.path.isabs(home):
        raise InvalidValueError(
            f"no cache folder: HOME is {home!r}, not an absolute path, so ~/.cache would be "
            "/.cache or relative; set RESNETLAB_CACHE (or HOME) to a folder"
        )
    return Path.home() / ".cache" / "resnetlab"


def json_text(obj: Any) -> str:
    """``obj`` as indented JSON, with NaN and infinity written as ``null``: JSON has no
    such numbers (``json.dumps`` writes a bare ``NaN`` that other parsers refuse). A NaN
    in resnetlab's output means "undefined", e.g. the accuracy of a class with no images."""
    import json
    import math

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), indent=2, allow_nan=False)
