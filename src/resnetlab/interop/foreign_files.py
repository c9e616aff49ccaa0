"""Reading a checkpoint file someone else published: from a local path or an http(s) URL
(downloaded once into the cache, only against a SHA-256 prefix: :func:`download_checkpoint`),
its format told from its first bytes (:func:`read_head`), its state dict read without running
any code from it (:func:`read_state_dict`: ``torch.load(weights_only=True)`` or
``safetensors``), every failure a one-line :class:`~resnetlab.errors.CheckpointError`.

What the tensors' names mean, and loading them into a model, is
:mod:`~resnetlab.interop.compat`'s.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from resnetlab.download import download, file_digest
from resnetlab.errors import CheckpointError, first_line
from resnetlab.fileio import cache_root

# torchvision's and akamaster's file names end in the first hex digits of their SHA-256.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.\w+$")


def load_reason(err: BaseException) -> str:
    """Why ``torch.load`` refused a file, in one line."""
    text = str(err)
    # weights_only refusals start with advice to load unsafely; the reason is further down.
    reason = re.search(r"WeightsUnpickler error: (.*?)(?:\. |\n|$)", text)
    if reason:
        return f"refused, it would run code on loading ({reason.group(1).strip()})"
    return first_line(err)


def checkpoint_cache() -> Path:
    """Downloaded checkpoints: ``checkpoints/`` in resnetlab's cache (``$RESNETLAB_CACHE``,
    else ``$XDG_CACHE_HOME/resnetlab``, else ``~/.cache/resnetlab``), beside the data."""
    return cache_root() / "checkpoints"


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex."""
    return file_digest(path, "sha256")


def cache_path(url: str, *, sha256: str | None = None) -> tuple[Path, str]:
    """Where :func:`download_checkpoint` keeps ``url`` (a file put there by hand is used
    too, once its hash checks), and the SHA-256 (prefix) it must have."""
    name = Path(urllib.parse.urlparse(url).path).name or "checkpoint"
    from_name = _HASH_IN_NAME.search(name)
    want = (sha256 or (from_name.group(1) if from_name else "")).lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", want):
        raise CheckpointError(
            f"{url}: pass sha256= (the file's SHA-256, at least 8 hex digits); "
            "downloads are never loaded unchecked"
        )
    return checkpoint_cache() / want[:8] / name, want


def download_checkpoint(url: str, *, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` into :func:`checkpoint_cache` once and return the local file.

    ``sha256`` is the file's SHA-256 or a prefix of it (8+ hex digits); without it the
    prefix in a torchvision-style name (``resnet18-f37072fd.pth``) is used, and with neither
    the download is refused. A file whose hash differs is deleted and never loaded; a cached
    file is checked again on every use. ``timeout`` is in seconds, per network operation.
    """
    target, want = cache_path(url, sha256=sha256)
    return download(
        url, target, algorithm="sha256", digest=want, error=CheckpointError, timeout=timeout
    )


ZIP_MAGIC = b"PK\x03\x04"  # what torch.save writes (since torch 1.6)


def read_head(p: Path) -> bytes:
    """The first four bytes of checkpoint file ``p``, to tell its format before loading it;
    a one-line :class:`CheckpointError` when it is missing, unreadable or empty."""
    if p.is_dir():  # `bench RUN` said "unknown model"; which checkpoint is the user's call
        held = [n for n in ("best.pt", "last.pt") if (p / n).is_file()]
        raise CheckpointError(
            f"{p} is a folder, not a checkpoint; give "
            + (
                f"one of its checkpoints: {' or '.join(str(p / n) for n in held)}"
                if held
                else "a checkpoint file"
            )
        )
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        with p.open("rb") as f:
            head = f.read(4)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {p}: {err.strerror or err}") from err
    if not head:
        raise CheckpointError(f"cannot read checkpoint {p}: the file is empty")
    return head


def _is_url(source: str | os.PathLike[str]) -> bool:
    return isinstance(source, str) and source.startswith(("https://", "http://"))


def read_state_dict(
    source: str | os.PathLike[str], *, sha256: str | None = None
) -> dict[str, Tensor]:
    """Read a state dict from a local file or an http(s) URL (see :func:`download_checkpoint`).

    ``.safetensors`` files are read with ``safetensors``; anything else (``.pth``, ``.pt``,
    akamaster's ``.th``) with ``torch.load(weights_only=True)``: no code runs from the file.
    Accepts a bare state dict or one wrapped under ``state_dict`` or ``model``, and strips a
    DataParallel/DDP ``module.`` prefix.
    """
    p = download_checkpoint(str(source), sha256=sha256) if _is_url(source) else Path(source)
    if p.suffix == ".safetensors":
        if not p.is_file():
            raise CheckpointError(f"checkpoint not found: {p}")
    else:
        head = read_head(p)  # files of torch < 1.6 are a pickle (protocol 2+): b"\x80"
        if head != ZIP_MAGIC and head[:1] != b"\x80":
            raise CheckpointError(
                f"cannot read checkpoint {p}: not a PyTorch weights file (neither a zip "
                "archive nor a pickle); .safetensors files need that suffix"
            )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(p, device="cpu")
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip, safetensors and unsafe-global errors all land here
        raise CheckpointError(f"cannot read checkpoint {p}: {load_reason(err)}") from err
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state
