"""Shared test helpers. Data from ../shared is optional: tests that need it skip cleanly."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURE = SHARED / "fixtures" / "torchvision_state_dicts.json"

# Under pytest-xdist each worker gets one thread: the workers already fill the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def torchvision_fixture() -> dict[str, Any]:
    if not FIXTURE.is_file():
        pytest.skip(f"{FIXTURE} not present (it lives in ../shared, beside the repository)")
    models: dict[str, Any] = json.loads(FIXTURE.read_text())["models"]
    return models


def meta_model(name: str, **overrides: Any) -> torch.nn.Module:
    """A registered model on the meta device: shapes and counts without weights."""
    from resnetlab.models import create_model

    with torch.device("meta"):
        return create_model(name, **overrides)


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoded-data caches go to a per-session temporary folder, never ~/.cache."""
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
