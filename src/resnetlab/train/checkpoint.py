"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint holds everything needed to continue exactly or to use the model: weights,
optimiser and schedule state, RNG states, position (epoch, step, batch within the epoch),
the resolved config, class names and the preprocessing (normalisation statistics). Saving
writes a temporary file beside the target, fsyncs it and renames it over the old one: a
crash, a ``kill -9`` or a full disk leaves the previous checkpoint intact. A save that fails
for lack of space (or any other ``OSError``) removes its temporary file and raises a
one-line :class:`CheckpointSaveError`; temporary files of killed writers are removed by the
next save in the same folder.
"""

from __future__ import annotations

import errno
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

# One error for every checkpoint problem, training checkpoints and published weights alike.
from resnetlab.errors import CheckpointError as CheckpointError
from resnetlab.errors import first_line
from resnetlab.fileio import make_temp
from resnetlab.interop.compat import ZIP_MAGIC, read_head

FORMAT = "resnetlab-checkpoint/1"


class CheckpointSaveError(CheckpointError, OSError):
    """A checkpoint could not be written (disk full, I/O error); the previous file at that
    path, if any, is untouched and no temporary file is left. Also an ``OSError`` whose
    ``errno`` is the failure's (``errno.ENOSPC`` for a full disk)."""

    @property
    def no_space(self) -> bool:
        """The disk, the user's quota or a file-size limit is full."""
        return self.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class NotTrainingCheckpointError(CheckpointError):
    """A readable PyTorch file that is not a resnetlab training checkpoint: a published
    weights file (torchvision's, akamaster's legacy pickle, …), which ``models.published``
    loads instead."""


def _temp_suffix() -> str:
    # The writer's pid in the name lets a later save tell a killed writer's leftover from
    # a file being written right now.
    return f".{os.getpid()}.tmp"


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary checkpoint files in ``folder`` whose writer no longer exists (a
    ``kill -9`` during a save leaves one, as large as the checkpoint itself); returns them.
    Every save calls this for its folder."""
    removed = []
    for tmp in Path(folder).glob(".*.pt.*.*.tmp"):
        pid = tmp.name.removesuffix(".tmp").rpartition(".")[2]
        if not pid.isdigit() or len(pid) > 9 or int(pid) in (0, os.getpid()):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            try:
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
            except OSError:  # tidying up must not fail a save
                pass
        except OSError:  # alive, but another user's process: leave it
            pass
    return removed


def _os_error(err: BaseException) -> OSError | None:
    """The ``OSError`` behind ``err``: torch's zip writer reports a failed ``write()`` as
    a ``RuntimeError`` ("unexpected pos …") whose context is the real ``OSError``."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (see the module docstring).

    Raises :class:`CheckpointSaveError` when the file cannot be written (no space, I/O
    error, permissions); the previous ``path`` is then unchanged.
    """
    target = Path(path)
    tmp = ""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target.parent)
        fd, tmp = make_temp(target, _temp_suffix())
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        cause = _os_error(err) if isinstance(err, Exception) else None
        if cause is None:
            raise  # not an I/O failure: a bug, Ctrl-C, …
        kept = "the previous one is intact" if target.is_file() else "nothing was written"
        reason = cause.strerror or first_line(cause)
        error = CheckpointSaveError(f"cannot save {target}: {reason} ({kept})")
        error.errno = cause.errno
        raise error from err
    try:  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some file systems refuse to fsync a folder; the file itself is synced
        pass
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint (no code runs from the file); one-line errors."""
    p = Path(path)
    head = read_head(p)
    if head[:1] == b"\x80":  # a legacy (pre-1.6) torch.save pickle: published weights
        raise NotTrainingCheckpointError(
            f"{p} is a legacy (pre-1.6) PyTorch file, not a resnetlab training checkpoint"
        )
    if head != ZIP_MAGIC:  # resnetlab checkpoints are never legacy pickles
        raise CheckpointError(f"cannot read checkpoint {p}: not a PyTorch file (no zip archive)")
    # torch.load does not check the zip's CRC-32s: a flipped bit in a tensor would load as a
    # silently wrong weight. Checking them costs one more read of the file.
    try:
        with zipfile.ZipFile(p) as archive:
            bad = archive.testzip()
    except Exception as err:  # no central directory (truncated), bad headers, …
        raise CheckpointError(
            f"cannot read checkpoint {p}: truncated or damaged (not a complete zip archive)"
        ) from err
    if bad is not None:
        raise CheckpointError(f"cannot read checkpoint {p}: damaged ({bad} fails its CRC check)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's own message suggests weights_only=False: exactly what must not be done.
        raise CheckpointError(
            f"cannot read checkpoint {p}: it holds objects that would run code when loaded "
            "(a resnetlab checkpoint never does)"
        ) from err
    except Exception as err:  # a truncated or damaged zip, …
        first = first_line(err).split(". ")[0]  # torch appends paragraphs of advice
        if first.startswith("PytorchStreamReader"):
            first = f"truncated or damaged ({first})"
        raise CheckpointError(f"cannot read checkpoint {p}: {first}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise NotTrainingCheckpointError(f"{p} is not a resnetlab training checkpoint")
    return state


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
