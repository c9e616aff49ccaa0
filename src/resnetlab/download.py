"""One verified downloader: a file reaches its place only once its hash is the expected one.

Used for the CIFAR archives (MD5, as published) and for published weights (SHA-256, or the
prefix of it in a torchvision-style name). Bytes go to a file beside the target, are hashed
as they arrive, and are renamed over the target (``os.replace``) only when the hash matches;
a mismatch deletes them. Every failure is one line, raised as the caller's error class.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from resnetlab.errors import ResnetlabError, first_line
from resnetlab.fileio import make_temp

CHUNK = 1 << 16  # bytes per read from the network

Progress = Callable[[int, int | None], None]
"""``progress(bytes_done, bytes_total_or_None)``, called while downloading."""

# The names the hashes go by in messages; any other hashlib name is allowed too.
_LABELS = {"md5": "md5", "sha256": "SHA-256"}


def file_digest(path: Path, algorithm: str) -> str:
    """The file's hex digest under ``algorithm`` (a :mod:`hashlib` name), read in 1 MiB
    chunks. MD5 is used to check a download only (``usedforsecurity=False``)."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _total_from(resp: http.client.HTTPResponse, start: int) -> int | None:
    # 206: "Content-Range: bytes 100-199/200"; 200: Content-Length is the whole file.
    content_range = resp.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].strip().isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _range_start(resp: http.client.HTTPResponse) -> int | None:
    content_range = resp.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _stream(
    resp: http.client.HTTPResponse,
    out: BinaryIO,
    done: int,
    progress: Progress | None,
    error: type[ResnetlabError],
    part: Path,
) -> None:
    """Copy the response body to ``out``; ``done`` bytes are already there."""
    total = _total_from(resp, done)
    if progress:
        progress(done, total)
    while block := resp.read(CHUNK):
        try:
            out.write(block)
        except OSError as err:  # disk full etc.: not a network problem, say so
            raise error(f"cannot write {part}: {first_line(err)}") from err
        done += len(block)
        if progress:
            progress(done, total)
    if total is not None and done != total:
        raise ConnectionError(f"connection closed after {done} of {total} bytes")


def _transfer(
    url: str,
    part: Path,
    *,
    resume: bool,
    timeout: float,
    progress: Progress | None,
    error: type[ResnetlabError],
) -> None:
    """``url``'s body into ``part``; with ``resume``, the bytes already in ``part`` are
    kept and only the rest is asked for (``Range: bytes=N-``)."""
    have = part.stat().st_size if resume and part.is_file() else 0
    headers = {"User-Agent": "resnetlab"} | ({"Range": f"bytes={have}-"} if have else {})
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            # A server may ignore Range (200) or answer another range: then start over.
            again = have > 0 and resp.status == 206 and _range_start(resp) == have
            start = have if again else 0
            with part.open("ab" if again else "wb") as out:
                _stream(resp, out, start, progress, error, part)
    except urllib.error.HTTPError as err:
        # 416 after a Range request: nothing lies beyond byte N, the .part is already whole.
        err.close()
        if not (err.code == 416 and have):
            raise error(f"cannot download {url}: the server answered HTTP {err.code}") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        # OSError covers timeouts, refused/reset connections and unreachable networks.
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        kept = f"; {part.name} kept to resume" if resume and part.is_file() else ""
        raise error(
            f"cannot download {url} (is this machine offline?): {first_line(reason)}{kept}"
        ) from err


def download(
    url: str,
    dest: Path,
    *,
    algorithm: str,
    digest: str,
    error: type[ResnetlabError],
    resume: bool = False,
    timeout: float = 30.0,
    progress: Progress | None = None,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``, once its ``algorithm`` hash (a
    :mod:`hashlib` name: ``"md5"``, ``"sha256"``) starts with ``digest`` (hex: the whole
    digest, or a prefix of it); a ``dest`` that already matches is kept as is.

    With ``resume``, bytes go to ``dest`` + ``".part"``, which a network failure keeps and
    the next call continues (``Range: bytes=N-``; a 200 answer restarts from zero). Without
    it they go to a temporary file of this call's own (two processes may fetch the same
    file at once), removed on any failure. A mismatch deletes the bytes. ``timeout`` is in
    seconds per network operation. Failures raise ``error`` (one line).
    """
    dest, want = Path(dest), digest.lower()
    if dest.is_file() and file_digest(dest, algorithm).startswith(want):
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if resume:
            part = dest.with_suffix(dest.suffix + ".part")
        else:
            fd, name = make_temp(dest, suffix=".partial")
            os.close(fd)
            part = Path(name)
    except OSError as err:
        raise error(f"cannot write to {dest.parent}: {err.strerror or err}") from err
    try:
        _transfer(url, part, resume=resume, timeout=timeout, progress=progress, error=error)
        got = file_digest(part, algorithm)
        if not got.startswith(want):
            part.unlink(missing_ok=True)
            label = _LABELS.get(algorithm, algorithm)
            raise error(
                f"{url} has {label} {got[:16]}…, expected {want[:16]}…: checksum mismatch, "
                "refused and deleted"
            )
        os.replace(part, dest)
    finally:
        if not resume:
            part.unlink(missing_ok=True)
    return dest
