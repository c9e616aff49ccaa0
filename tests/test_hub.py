"""hubconf.py: torch.hub finds one entry point per registered model, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from resnetlab.analysis import count_params
from resnetlab.errors import CheckpointError
from resnetlab.interop import list_weights
from resnetlab.models import ResNet, create_model, list_models


@pytest.fixture
def hub_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The checkout as torch.hub's cached GitHub download of ``me/resnetlab:main`` (a
    cached repository is used as is, without the network)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "me_resnetlab_main").symlink_to(REPO, target_is_directory=True)
    return "me/resnetlab:main"


def test_hub_lists_every_registered_model_and_catalogue_name(hub_repo: str) -> None:
    entries = torch.hub.list(hub_repo, trust_repo=True, verbose=False)
    assert entries == sorted(list_models() + [w.name for w in list_weights()])
    assert "resnet50.tv2_in1k" in entries and "resnet18.tv_in1k" in entries


def test_hubconf_docstring_calls_only_what_torch_hub_takes() -> None:
    # torch.hub.list takes no source= (a TypeError on torch 2.13): the docstring must not
    # show it, and every torch.hub call it shows must run.
    doc = (REPO / "hubconf.py").read_text().split('"""')[1]
    listed = [line for line in doc.splitlines() if "hub.list(" in line]
    assert listed and all("source=" not in line and '("/' not in line for line in listed)
    with pytest.raises(TypeError):
        torch.hub.list(str(REPO), source="local")  # type: ignore[call-arg]


def test_hub_help_is_the_registry_description(hub_repo: str) -> None:
    doc = torch.hub.help(hub_repo, "resnet50_v1_5", trust_repo=True)
    assert doc.startswith("ResNet-50 v1.5 (torchvision: stride on the 3×3)")


def test_hub_load_local_builds_the_model() -> None:
    model = torch.hub.load(str(REPO), "resnet20", source="local", trust_repo=True, num_classes=100)
    assert isinstance(model, ResNet)
    assert model.get_classifier().out_features == 100
    assert count_params(model) == count_params(create_model("resnet20", num_classes=100))


def test_hub_pretrained_on_a_name_timm_means_otherwise_says_which_to_use() -> None:
    with pytest.raises(CheckpointError, match="resnet50 is resnetlab's resnet50_v1_5"):
        torch.hub.load(str(REPO), "resnet50", source="local", pretrained=True)
    with pytest.raises(ValueError, match="has no option 'colour'"):
        torch.hub.load(str(REPO), "resnet50", source="local", colour="red")


def test_hub_loads_a_catalogue_name_with_timm_keywords() -> None:
    model = torch.hub.load(
        str(REPO), "resnet50.tv2_in1k", source="local", num_classes=7, drop_path_rate=0.1
    )
    assert isinstance(model, ResNet) and model.spec.placement == "v1.5"
    assert model.num_classes == 7 and model.pretrained_cfg["name"] == "resnet50.tv2_in1k"


def test_hubconf_finds_src_without_an_installed_resnetlab(tmp_path: Path) -> None:
    # A fresh interpreter that cannot import resnetlab (the editable install's path is
    # dropped), as after torch.hub's download of a checkout.
    code = f"""
import importlib.util, sys
sys.path[:] = [p for p in sys.path if p != {str(REPO / "src")!r}]
assert importlib.util.find_spec("resnetlab") is None
import torch
model = torch.hub.load({str(REPO)!r}, "resnet20", source="local")
import resnetlab
print(type(model).__name__, resnetlab.__file__)
"""
    env = {**os.environ, "PYTHONPATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    kind, path = out.stdout.split()
    assert kind == "ResNet" and Path(path).is_relative_to(REPO / "src")


def test_hub_pretrained_catalogue_name_loads_the_published_file() -> None:
    import shutil

    from conftest import SHARED
    from resnetlab.interop import get_weights
    from resnetlab.interop.foreign_files import cache_path

    src = SHARED / "weights" / "resnet32-d509ac18.th"
    if not src.is_file():
        pytest.skip(f"{src} not present (it lives in ../shared, beside the repository)")
    w = get_weights("resnet32.akamaster_cifar10")
    target, _ = cache_path(w.url, sha256=w.sha256)  # as if downloaded once (no network)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    model = torch.hub.load(str(REPO), "resnet32.akamaster_cifar10", source="local", pretrained=True)
    ref = create_model("resnet32", num_classes=10)
    from resnetlab.interop import load_pretrained

    ref = load_pretrained(src, ref, layout="akamaster")[0]
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True)
    )
