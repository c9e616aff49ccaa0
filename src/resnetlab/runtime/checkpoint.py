"""Checkpoints: one typed :class:`Checkpoint`, written atomically, read with ``weights_only=True``.

A checkpoint holds everything needed to continue exactly or to use the model: weights,
optimiser and schedule state, RNG states, position (epoch, step, batch within the epoch),
the resolved config, class names and the preprocessing (normalisation statistics). Saving
writes a temporary file beside the target, fsyncs it and renames it over the old one: a
crash, a ``kill -9`` or a full disk leaves the previous checkpoint intact. A save that fails
for lack of space (or any other ``OSError``) removes its temporary file and raises a
one-line :class:`CheckpointSaveError`; temporary files of killed writers are removed by the
next save in the same folder.

On disk a checkpoint is a plain dict (``format`` plus the fields of :class:`Checkpoint`
under the names below), so files written before the class existed load unchanged;
:func:`save_checkpoint` and :func:`load_checkpoint` are that file layer.
"""

from __future__ import annotations

import errno
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnetlab.data.augment import Preprocess

# One error for every checkpoint problem, training checkpoints and published weights alike.
from resnetlab.errors import CheckpointError as CheckpointError
from resnetlab.errors import find_cause, first_line
from resnetlab.fileio import make_temp
from resnetlab.interop.foreign_files import ZIP_MAGIC, read_head
from resnetlab.models.registry import create_model
from resnetlab.runtime.config import TrainConfig, config_from_dict, plain
from resnetlab.runtime.trust import check_numbers

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
        cause = find_cause(err, OSError) if isinstance(err, Exception) else None
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


StateDict = dict[str, Tensor]


@dataclass
class Checkpoint:
    """A training checkpoint: what a run needs to continue exactly, and what a user of the
    trained model needs (its weights, classes, preprocessing and config).

    Each field is saved under its own name. ``model`` is the evaluated model's state dict:
    the weight average when the run keeps one (``optim.ema_decay``), whose trained weights are
    then ``train_model``. ``preprocess`` is the preprocessing as trained (augmentations
    included); :attr:`eval_preprocess` its evaluation part, :meth:`load_model` the network.
    ``epoch`` counts finished epochs; ``step`` optimiser steps; ``partial`` holds the running
    sums and the augmentation generator of an epoch paused midway (``None`` at an epoch's
    end); ``ranks``, under data parallelism, every rank's random streams."""

    model: StateDict
    config: TrainConfig
    classes: tuple[str, ...]
    preprocess: Preprocess  # the preprocessing as trained, augmentations included
    data_size: tuple[int, int, int]  # (C, H, W) the images were stored at
    model_name: str
    epoch: int = 0
    step: int = 0
    best: float = float("-inf")  # best early-stopping value (higher is better)
    bad_epochs: int = 0
    best_val_top1: float = 0.0  # %
    optimizer: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    partial: dict[str, Any] | None = None
    elapsed_s: float = 0.0  # wall time of every session of the run so far
    world_size: int = 1
    ranks: list[dict[str, Any]] | None = None
    train_model: StateDict | None = None  # with a weight average: the trained weights
    ema_updates: int | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """Read a training checkpoint (see :func:`load_checkpoint`: no code runs from the
        file, one-line errors)."""
        return cls.from_state(load_checkpoint(path), path)

    @classmethod
    def from_state(cls, state: dict[str, Any], path: str | os.PathLike[str] = "") -> Checkpoint:
        """The checkpoint saved as ``state`` (a dict read from ``path``)."""
        try:
            config = state["config"]
        except KeyError as err:
            raise CheckpointError(f"{path} is an incomplete training checkpoint ({err})") from err
        config = config_from_dict(config)  # a ConfigError says what is wrong with it
        try:
            c, h, w = (int(v) for v in state["data_size"])
            ckpt = cls(
                model=state["model"],
                config=config,
                classes=tuple(state["classes"]),
                preprocess=_pipeline(state["preprocess"]),
                data_size=(c, h, w),
                model_name=str(state.get("model_name") or state["config"]["model"]["name"]),
                epoch=int(state.get("epoch", 0)),
                step=int(state.get("step", 0)),
                best=float(state.get("best", float("-inf"))),
                bad_epochs=int(state.get("bad_epochs", 0)),
                best_val_top1=float(state.get("best_val_top1", 0.0)),
                optimizer=state.get("optimizer"),
                schedule=state.get("schedule"),
                scaler=state.get("scaler"),
                rng=state.get("rng"),
                partial=state.get("partial"),
                elapsed_s=float(state.get("elapsed_s", 0.0)),
                world_size=int(state.get("world_size", 1)),
                ranks=state.get("ranks"),
                train_model=state.get("train_model"),
                ema_updates=state.get("ema_updates"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path} is an incomplete training checkpoint ({err})") from err
        p = ckpt.preprocess  # the file is not ours to trust: its numbers are checked (issue 33)
        check_numbers(path, weights=ckpt.model, classes=ckpt.classes, mean=p.mean, std=p.std,
                      image_size=p.image_size, data_size=ckpt.data_size)  # fmt: skip
        return ckpt

    def to_state(self) -> dict[str, Any]:
        """The dict saved on disk, key for key as runs have always written it."""
        averaged: dict[str, Any] = {}
        if self.train_model is not None:
            averaged = {"train_model": self.train_model, "ema_updates": self.ema_updates}
        return {
            "model": self.model,
            **averaged,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "scaler": self.scaler,
            "rng": self.rng,
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "best_val_top1": self.best_val_top1,
            "partial": self.partial,
            "config": self.config.to_dict(),
            "classes": list(self.classes),
            "preprocess": plain(asdict(self.preprocess)),
            "data_size": list(self.data_size),
            "model_name": self.model_name,
            "elapsed_s": self.elapsed_s,
            "world_size": self.world_size,
            "ranks": self.ranks,
        }

    @property
    def eval_preprocess(self) -> Preprocess:
        """What the model expects of an image at evaluation: the normalisation (mean/std),
        the input side and the resize/crop; the training-only augmentations (policy,
        erasing, mixing) at their defaults."""
        return eval_preprocess(self.preprocess)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (see :func:`save_checkpoint`; :class:`CheckpointSaveError` on a
        full disk or an I/O error, the previous file then intact)."""
        return save_checkpoint(self.to_state(), path)

    def load_model(self) -> nn.Module:
        """The network the checkpoint's weights belong to, built from its config and
        loaded strictly, in eval mode on the CPU."""
        options: dict[str, Any] = {
            **self.config.model.options,
            "num_classes": len(self.classes),
            "in_channels": self.data_size[0],
        }
        net = create_model(self.config.model.name, **options)
        try:  # a crafted file: classes, channels or keys that do not fit the weights
            net.load_state_dict(self.model)
        except (RuntimeError, TypeError, AttributeError) as err:
            detail = " ".join(str(err).split())[:200]
            raise CheckpointError(
                f"checkpoint weights do not fit {self.config.model.name} with "
                f"{len(self.classes)} classes and {self.data_size[0]} channels ({detail})"
            ) from err
        return net.eval()


_PREPROCESS_FIELDS = {f.name for f in fields(Preprocess)}


def _pipeline(p: dict[str, Any]) -> Preprocess:
    """The preprocessing a checkpoint stored as a dict; fields a file predates take their
    defaults (``crop_pct``: 0.875)."""
    known: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}
    return Preprocess(**{k: v for k, v in known.items() if k in _PREPROCESS_FIELDS})


def eval_preprocess(p: Preprocess | dict[str, Any]) -> Preprocess:
    """The evaluation part of a preprocessing (a :class:`Preprocess` or the dict a
    checkpoint or an int8 file's metadata stored): normalisation, input side, resize/crop."""
    d = asdict(p) if isinstance(p, Preprocess) else p
    return Preprocess(
        mean=tuple(d["mean"]),
        std=tuple(d["std"]),
        image_size=int(d["image_size"]),
        augment=d["augment"],
        padding=int(d["padding"]),
        scale=tuple(d["scale"]),
        crop_pct=float(d.get("crop_pct", 0.875)),  # checkpoints before it existed: 0.875
    )
