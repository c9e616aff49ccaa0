"""Resolved once (issue 30): ``data.augment: auto`` is decided by ``resolve_pipeline`` before
the run's parts are built; nothing downstream guesses it a second time."""

from __future__ import annotations

import pytest

from resnetlab.data.datasets import load_data
from resnetlab.runtime.config import resolve_config
from resnetlab.train.build import preprocess_for, resolve_pipeline


def test_augment_auto_is_resolved_once_before_the_preprocessing() -> None:
    cfg = resolve_config("fast", {"data.source": "sample", "data.limit_per_class": 2})
    assert cfg.data.augment == "auto"
    bundle = load_data("sample", seed=0, limit=2)
    with pytest.raises(RuntimeError, match="resolve_pipeline"):
        preprocess_for(cfg, bundle)
    resolved, said = resolve_pipeline(cfg)
    assert resolved.data.augment == "cifar" and said
    assert preprocess_for(resolved, bundle).augment == "cifar"
