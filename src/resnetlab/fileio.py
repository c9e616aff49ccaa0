"""Writing files so that an existing file is never lost or left half-written."""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from resnetlab.errors import InvalidValueError, OutputError

LOCK_NAME = ".resnetlab.lock"  # in a folder one process writes (a run folder)


class FolderBusyError(OutputError):
    """Another live process holds the folder (one-line message naming its pid)."""


_SPECIAL = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    """What a file that is not a regular one is, in words."""
    return next((word for test, word in _SPECIAL if test(mode)), "a special file")


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Raise ``ValueError`` (one line) unless ``path`` can be written as a file; returns
    the file to write. A symlink is followed, deliberately: the file it points to is
    replaced and the link stays a link (a rename over the link itself would turn it into a
    regular file). A target that exists but is not a regular file — a device such as
    ``/dev/null``, a named pipe, a socket — is refused: the atomic rename would replace the
    node itself (as root, destroy ``/dev/null``)."""
    p = Path(path)
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    if p.exists() and not p.is_dir() and not p.is_file():
        raise OutputError(f"cannot write {path}: it is {_kind(p.stat().st_mode)}, not a file")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"cannot write {p}: folder {folder} does not exist")
    if p.is_dir():
        raise OutputError(f"cannot write {p}: it is a folder")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise OutputError(f"cannot write {p}: permission denied")
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
        raise OutputError(f"cannot write to {p}: permission denied")
    return p


def make_temp(target: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A temporary file beside ``target`` with the permissions a new file would get
    (``mkstemp`` makes them 0600, which would leave charts and checkpoints unreadable to
    others after the rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    set_new_file_mode(tmp)
    return fd, tmp


def set_new_file_mode(path: str | os.PathLike[str]) -> None:
    """The mode a new file gets under the umask (0666 & ~umask): for files a library wrote
    its own way (safetensors' ``save_file`` recreates its file 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over
    ``path``: readers see the old file or the new one, never a mix."""
    p = check_writable(path)
    fd, tmp = make_temp(p)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive ``flock`` on ``path`` (created if need be), or None if
    another process holds it. A lock file unlinked by its releasing owner between our
    ``open`` and ``flock`` is a stale inode: retried, so two processes never both win."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def folder_lock(folder: str | os.PathLike[str], *, hint: str = "") -> Iterator[Path]:
    """Own ``folder`` (created if missing) while the block runs: an exclusive ``flock`` on
    ``folder/.resnetlab.lock``, which holds the owner's pid. A second process gets a
    one-line :class:`FolderBusyError` instead of interleaving its files with ours. The
    kernel drops the lock when its process dies, ``kill -9`` included, so a dead owner never
    blocks the next. The folders this call created are removed again if left empty."""
    p = Path(folder)
    created = [q for q in (p, *p.parents) if not q.exists()]  # innermost first
    p.mkdir(parents=True, exist_ok=True)
    path = p / LOCK_NAME
    fd = _try_lock(path)
    if fd is None:
        try:
            pid = path.read_text(encoding="utf-8").strip()
        except OSError:
            pid = ""
        raise FolderBusyError(f"{p} is in use by another process (pid {pid or 'unknown'}){hint}")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield p
    finally:
        path.unlink(missing_ok=True)  # before the unlock: a waiter then retries (see above)
        os.close(fd)
        for q in created:  # only while empty: a run that wrote nothing leaves nothing
            try:
                q.rmdir()
            except OSError:
                break


def pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend (chosen when first needed, so that
    importing resnetlab changes no global state)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Save a matplotlib figure beside ``path``, then rename it over ``path``: an existing
    chart is replaced whole or not at all. The format follows the suffix (.png, .svg);
    symlinks and special files as in :func:`check_writable`."""
    p = check_writable(path)
    fd, tmp = make_temp(p, p.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, format=p.suffix[1:].lower() or "png", dpi=dpi, bbox_inches="tight")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


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
