"""A run folder, read: its config, its checkpoints. One reader, so that every command and
experiment that looks into a finished (or running) run reads it the same way.

``resnetlab train`` writes ``config.yaml`` (the resolved config), ``last.pt`` (every epoch and
on interruption) and ``best.pt`` (best validation top-1) there; see :mod:`resnetlab.train`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from resnetlab.runtime.checkpoint import Checkpoint
from resnetlab.runtime.config import TrainConfig, config_from_dict

CONFIG_NAME = "config.yaml"
LAST = "last.pt"
BEST = "best.pt"


def checkpoint_file(resume: str | os.PathLike[str]) -> Path:
    """A run folder means its ``last.pt``; a file is itself."""
    path = Path(resume)
    return path / LAST if path.is_dir() else path


@dataclass(frozen=True)
class RunFolder:
    """The folder of one training run; it names the files in it (nothing else spells them)."""

    path: Path

    @property
    def last(self) -> Path:
        """``last.pt``: the checkpoint of every epoch, and of an interruption."""
        return self.path / LAST

    @property
    def best(self) -> Path:
        """``best.pt``: the epoch of the best validation top-1."""
        return self.path / BEST

    @property
    def config_file(self) -> Path:
        """``config.yaml``: the run's resolved config."""
        return self.path / CONFIG_NAME

    def settings(self) -> Any:
        """``config.yaml`` as written: nested dicts of plain values (raises ``OSError`` or
        ``yaml.YAMLError`` as reading and parsing it do)."""
        return yaml.safe_load(self.config_file.read_text())

    def config(self) -> TrainConfig:
        """The run's resolved config, from ``config.yaml``."""
        return config_from_dict(self.settings())

    def checkpoint(self, name: str = BEST) -> Checkpoint:
        """``best.pt`` (or ``name``), read as :meth:`Checkpoint.load` reads it."""
        return Checkpoint.load(self.path / name)
