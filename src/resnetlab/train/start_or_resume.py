"""The run folder from the training side: its name, who owns it, what may start or continue
in it (a fresh run never lands on another's logs; a resumed one keeps its config)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from resnetlab.fileio import folder_lock
from resnetlab.runtime.checkpoint import Checkpoint
from resnetlab.runtime.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    current_names,
    plain,
)
from resnetlab.runtime.folder_layout import BEST, CONFIG_NAME, LAST, checkpoint_file
from resnetlab.runtime.yaml_text import load_yaml, yaml_reason
from resnetlab.train.logs import CSV_NAME, JSONL_NAME, STEPS_NAME


def new_run_dir(cfg: TrainConfig) -> Path:
    name = cfg.run.name or (
        f"{cfg.model.name}-{cfg.recipe}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    return Path(cfg.run.out_dir).expanduser() / name


# What a run writes into its folder (the lock file aside).
RUN_FILES = (
    LAST,
    BEST,
    CONFIG_NAME,
    CSV_NAME,
    JSONL_NAME,
    STEPS_NAME,
    "results.json",
    "report.md",
    "curves.png",
    "confusion.png",
)


def dead_run_files(run_dir: Path) -> list[str]:
    """The run files in ``run_dir`` (none: a new folder)."""
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def clear_dead_run(run_dir: Path) -> list[str]:
    """Remove the files of a run that died before its first checkpoint (nothing in them can
    be continued), so that a fresh run there does not append to its logs; returns the names
    removed. For callers that own the folder's contents, such as the experiments' run
    store; ``resnetlab train`` refuses such a folder instead."""
    with folder_lock(run_dir, hint="; wait for it to finish"):  # a live run is not dead
        if (run_dir / LAST).exists():
            raise ConfigError(f"{run_dir} holds a checkpoint: resume it, do not clear it")
        names = dead_run_files(run_dir)
        for name in names:
            (run_dir / name).unlink()
    return names


def check_new(run_dir: Path) -> None:
    """A fresh run starts in an empty folder: never on top of another run's logs."""
    if (run_dir / LAST).exists():
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with --resume "
            f"{run_dir} or choose another --name"
        )
    left = dead_run_files(run_dir)
    if left:
        raise ConfigError(
            f"{run_dir} holds the files of a run that saved no checkpoint "
            f"({', '.join(left)}), which cannot be resumed; remove them or "
            "choose another --name"
        )


@contextmanager
def owned(run_dir: Path, *, fresh: bool) -> Iterator[None]:
    """This process owns ``run_dir`` while the block runs (see :func:`folder_lock`): two
    runs with one ``--name`` would interleave their metrics and overwrite each other's
    checkpoints."""
    hint = "; wait for it to finish" + (" or choose another --name" if fresh else "")
    with folder_lock(run_dir, hint=hint):
        if fresh:
            check_new(run_dir)
        yield


# Run settings ``--resume`` keeps: the seed chose the validation split, the training subset
# and every epoch's batch order, so a new one would re-split the data mid-run; the name is
# the folder the run lives in (the library may resume a folder under an older name).
FIXED_RUN_KEYS = ("seed", "name")


def check_resumable(cfg: TrainConfig, ckpt: Checkpoint, path: Path) -> None:
    """``cfg`` continues the run ``ckpt`` was saved from: only run settings may differ."""
    saved = ckpt.config
    check_resume_target(path)
    check_config_file(cfg, ckpt.config.to_dict(), path.parent / CONFIG_NAME)
    done, step = ckpt.epoch, ckpt.step
    if cfg.run.epochs is not None and cfg.run.epochs < done:
        raise ConfigError(
            f"cannot resume {path} with run.epochs {cfg.run.epochs}: it has trained {done} "
            f"epochs already (give --epochs {done} or more, or leave it out)"
        )
    if cfg.run.iterations is not None and cfg.run.iterations < step:
        raise ConfigError(
            f"cannot resume {path} with run.iterations {cfg.run.iterations}: it has trained "
            f"{step} already (give --iterations {step} or more, or leave it out)"
        )
    # Only the run section (length, device) may differ: anything else would not be the same
    # run continued.
    for section in ("model", "data", "optim", "schedule"):
        if getattr(saved, section) != getattr(cfg, section):
            raise ConfigError(
                f"cannot resume {path} with a different {section} config; only "
                "run settings (epochs, time limit) may change"
            )
    if saved.run.tta != cfg.run.tta:  # the best checkpoint so far was chosen with its views
        raise ConfigError(
            f"cannot resume {path} with run.tta {cfg.run.tta!r}: it selects with {saved.run.tta!r}"
        )
    if saved.run.seed != cfg.run.seed:
        raise ConfigError(
            f"cannot resume {path} with a different run.seed ({cfg.run.seed}; the run has "
            f"{saved.run.seed}): the seed chose its validation split and batch order"
        )


def check_resume_target(path: Path) -> None:
    """Resuming from ``RUN/best.pt`` (or any file beside a ``last.pt``) would save the
    continued run's ``last.pt`` over the one there, losing the epochs after the best."""
    last = path.parent / LAST
    if path.name != LAST and last.exists() and not last.samefile(path):
        raise ConfigError(
            f"resuming from {path} would overwrite {last}, the run's own latest checkpoint; "
            f"resume {path.parent} itself, or copy {path.name} into a folder of its own to "
            "branch from it"
        )


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) and k != "options" else {key: v})
    return out


def _DEFAULTS() -> dict[str, Any]:  # noqa: N802 (a constant, built on first use)
    return _flatten(TrainConfig().to_dict())


def check_config_file(cfg: TrainConfig, saved: dict[str, Any], file: Path) -> None:
    """``RUN/config.yaml`` says what the run is; ``--resume`` continues the checkpoint's
    config and rewrites the file. An edit to the file would be ignored and then lost, so it
    is refused, naming the key. A run setting the command line changes (``--epochs``) may
    differ: the file may hold a value from a session killed before its first checkpoint."""
    if not file.is_file():
        return
    try:
        on_disk = load_yaml(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {file}: {yaml_reason(err)}") from err
    if isinstance(on_disk, dict):  # a schedule under its earlier name is not an edit
        on_disk = current_names(on_disk)
    ours, theirs, new = _flatten(plain(saved)), _flatten(on_disk), _flatten(cfg.to_dict())
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) == theirs.get(key):
            continue
        if key not in theirs and ours.get(key) == _DEFAULTS().get(key):
            continue  # a key newer than the file, at its default (earlier code's behaviour)
        if key.startswith("run.") and new.get(key) != ours.get(key):
            continue  # set on this command line: it wins, and the file will say so
        raise ConfigError(
            f"{file} was edited: {key} is {theirs.get(key)!r} there, {ours.get(key)!r} in the "
            "run's checkpoint; --resume continues the checkpoint's config, so undo the edit "
            "(run settings such as --epochs go on the command line) or start a new run"
        )


def check_out_dir(out: Path) -> None:
    """``--out RUN`` would nest a new run inside an existing one."""
    held = [name for name in (LAST, CONFIG_NAME) if (out / name).is_file()]
    if held:
        raise ConfigError(
            f"run.out_dir (--out) {out} is a run folder (it holds {held[0]}); --out names the "
            f"folder run folders go in: give its parent, or --resume {out} to continue it"
        )


def resume_config(resume: str | Path, run_overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of a run, with ``run.*`` overrides (``run.epochs=40``) applied."""
    saved = Checkpoint.load(checkpoint_file(resume)).config.to_dict()
    bad = sorted(k for k in run_overrides if not k.startswith("run."))
    bad += sorted(
        f"run.{k}"
        for k in FIXED_RUN_KEYS
        if f"run.{k}" in run_overrides and run_overrides[f"run.{k}"] != saved["run"].get(k)
    )
    if bad:
        raise ConfigError(
            f"--resume continues a run as it was configured; {bad[0]} cannot change "
            "(only how long and where it runs: --epochs, --iterations, --time-limit, --device)"
        )
    return config_from_dict(apply_overrides(saved, run_overrides))


def finished_run(run_dir: Path, ckpt: Checkpoint, total_steps: int, test: bool) -> str:
    """Why the run in ``run_dir`` (its checkpoint ``ckpt``; the resumed config plans
    ``total_steps`` steps, ``test``: with the test evaluation) has nothing left to do, in one
    line; ``""`` if it has: results.json says it completed (or stopped early) and, where the
    test was asked for, holds its figures, and the plan asks no more steps."""
    import json

    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        status, tested = results["status"], results["test"] is not None
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if status not in ("completed", "early_stop") or (test and not tested):
        return ""
    if status == "completed" and ckpt.step < total_steps:
        return ""
    return (
        f"{run_dir} is finished ({status} after {ckpt.epoch} epochs"
        f"{', test evaluated' if tested else ''}): nothing to do, nothing changed "
        "(--epochs N with more epochs trains it further)"
    )
