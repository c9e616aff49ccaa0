"""torchvision/timm compatibility: same keys and shapes in the same order; strict loading."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import meta_model
from resnetlab.analysis import count_params
from resnetlab.models import (
    CheckpointError,
    create_model,
    load_torchvision_checkpoint,
    read_state_dict,
    resnetlab_name,
)
from resnetlab.models.compat import TORCHVISION_NAMES


def test_every_fixture_model_has_a_match(torchvision_fixture: dict[str, Any]) -> None:
    assert set(torchvision_fixture) <= set(TORCHVISION_NAMES)


def test_state_dict_keys_and_shapes_in_order(torchvision_fixture: dict[str, Any]) -> None:
    for tv_name, facts in torchvision_fixture.items():
        model = meta_model(resnetlab_name(tv_name))
        ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
        assert ours == facts["state_dict"], tv_name
        assert count_params(model) == facts["num_params"], tv_name


def test_macs_match_the_fixture(torchvision_fixture: dict[str, Any]) -> None:
    from resnetlab.analysis import compare

    for tv_name, facts in torchvision_fixture.items():
        row = compare(resnetlab_name(tv_name), input_size=(1, 3, 224, 224)).rows[0]
        assert row.conv_macs == facts["macs_224"], tv_name


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_load_checkpoint_roundtrip_with_wrappers(tmp_path: Path) -> None:
    source = create_model("resnet18")
    state = source.state_dict()
    plain = _save(state, tmp_path / "plain.pth")
    wrapped = _save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
                    tmp_path / "ddp.pth")  # fmt: skip
    for path in (plain, wrapped):
        model = load_torchvision_checkpoint(path, "resnet18")
        for k, v in model.state_dict().items():
            assert torch.equal(v, state[k])


def test_torchvision_resnet50_maps_to_v1_5(tmp_path: Path) -> None:
    state = create_model("resnet50_v1_5").state_dict()
    path = _save(state, tmp_path / "r50.pth")
    model = load_torchvision_checkpoint(path, "resnet50")
    assert model.spec.placement == "v1.5"  # type: ignore[union-attr]


def test_wrong_model_gives_one_line_error(tmp_path: Path) -> None:
    path = _save(create_model("resnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match=r"does not fit this model: .*shape mismatches"):
        load_torchvision_checkpoint(path, "resnet18", num_classes=10)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_torchvision_checkpoint(path, "resnet34")


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(bad)
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")


class _Exploit:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _Exploit()}, f)
    with pytest.raises(CheckpointError):
        read_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out
