"""The data a run config names: loaded once, the same way, for training, evaluation and the
experiments (the same validation split, since the run's seed chose it)."""

from __future__ import annotations

from collections.abc import Callable

from resnetlab.data.datasets import DataBundle, load_data
from resnetlab.runtime.config import TrainConfig

Log = Callable[[str], None]


def load_run_data(cfg: TrainConfig, log: Log) -> DataBundle:
    """The data a config names, with its validation split and statistics; skipped files
    are logged."""
    d = cfg.data
    bundle = load_data(
        d.source,
        root=d.root,
        download=d.download,
        val_fraction=d.val_fraction,
        seed=cfg.run.seed,
        load_size=d.load_size,
        interpolation=d.interpolation,
        on_error=d.on_error,
        cache=d.cache,
        in_memory=d.in_memory,
        limit=d.limit_per_class,
        limit_all=d.limit_splits == "all",
        progress=log,
    )
    for name, reason in bundle.skipped[:20]:
        log(f"skipped {name}: {reason}")
    if len(bundle.skipped) > 20:
        log(f"… and {len(bundle.skipped) - 20} more skipped files")
    return bundle
