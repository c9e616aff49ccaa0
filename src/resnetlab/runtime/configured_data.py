"""The data a run config names: loaded once, the same way, for training, evaluation and the
experiments (the same validation split, since the run's seed chose it)."""

from __future__ import annotations

import logging

from resnetlab.data.datasets import DataBundle, load_data
from resnetlab.runtime.config import TrainConfig

log = logging.getLogger(__name__)


def load_run_data(cfg: TrainConfig, *, say: bool = True) -> DataBundle:
    """The data a config names, with its validation split and statistics; the decoding and
    the skipped files are logged (``say=False``: not, for an evaluation that reads a run's
    data again)."""
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
        progress=log.info if say else None,
    )
    if not say:
        return bundle
    for name, reason in bundle.skipped[:20]:
        log.info(f"skipped {name}: {reason}")
    if len(bundle.skipped) > 20:
        log.info(f"… and {len(bundle.skipped) - 20} more skipped files")
    return bundle
