"""One owner per folder: an exclusive ``flock`` that a dead process never holds."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from resnetlab.errors import OutputError

LOCK_NAME = ".resnetlab.lock"  # in a folder one process writes (a run folder)


class FolderBusyError(OutputError):
    """Another live process holds the folder (one-line message naming its pid)."""


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
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as err:  # a full disk: say which file, as every writer does
            why = (err.strerror or str(err)).lower()
            raise OutputError(f"cannot write {path}: {why}") from err
        yield p
    finally:
        path.unlink(missing_ok=True)  # before the unlock: a waiter then retries (see above)
        os.close(fd)
        for q in created:  # only while empty: a run that wrote nothing leaves nothing
            try:
                q.rmdir()
            except OSError:
                break
