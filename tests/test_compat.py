"""Interop: torchvision/timm keys and shapes in order, akamaster's CIFAR nets, downloads with
hash checks, parity reports, and files that would run code."""

from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from conftest import http_server, meta_model
from resnetlab.analysis import count_params
from resnetlab.infer.folding import randomize_batchnorm
from resnetlab.interop import (
    CheckpointError,
    load_pretrained,
    load_torchvision_checkpoint,
    parity_report,
    read_state_dict,
    resnetlab_name,
)
from resnetlab.interop.compat import TORCHVISION_NAMES, architectures_of, from_akamaster
from resnetlab.models import create_model


def _one_line(err: pytest.ExceptionInfo[CheckpointError]) -> str:
    text = str(err.value)
    assert text and "\n" not in text and "\x1b" not in text
    return text


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
    wrapped = _save(
        {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
        tmp_path / "ddp.pth",
    )
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
    with pytest.raises(CheckpointError, match=r"does not fit resnet18: .*2 shape mismatches") as e:
        load_torchvision_checkpoint(path, "resnet18", num_classes=10)
    assert "checkpoint head has 1000 classes, model has 10" in _one_line(e)
    with pytest.raises(CheckpointError, match="holds a resnet18 .*not a resnet34") as e:
        load_torchvision_checkpoint(path, "resnet34")
    assert "use --model resnet18" in _one_line(e)


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as e:
        read_state_dict(bad)
    _one_line(e)
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")
    fake = tmp_path / "bad.safetensors"
    fake.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as e:
        read_state_dict(fake)
    _one_line(e)
    not_tensors = _save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match="does not hold a state dict of tensors"):
        read_state_dict(not_tensors)


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


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: a file appears if the pickle ever runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_code_in_a_pt_file_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    state = dict(create_model("resnet20").state_dict())
    path = tmp_path / "resnet20.pt"
    torch.save({"state_dict": state, "payload": _WritesMarker(marker)}, path)
    for load in (
        lambda: read_state_dict(path),
        lambda: load_pretrained(path, "resnet20", layout="akamaster"),
    ):
        with pytest.raises(CheckpointError, match="refused, it would run code") as e:
            load()
        assert "open was not an allowed global" in _one_line(e)
        assert not marker.exists()
    # Control: the payload is live, an unsafe load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()


# --------------------------------------------------------------------------- parity report


def test_parity_report_rows_and_head(tmp_path: Path) -> None:
    state = dict(create_model("resnet18").state_dict())
    del state["layer4.1.bn2.bias"]
    state["extra.weight"] = torch.zeros(3)
    model = create_model("resnet18", num_classes=10)
    report = parity_report(state, model)
    assert not report.ok
    assert report.head_classes == (1000, 10)
    assert [tuple(m) for m in report.mismatched] == [
        ("fc.weight", (1000, 512), (10, 512)),
        ("fc.bias", (1000,), (10,)),
    ]
    assert report.missing == ("layer4.1.bn2.bias",)
    assert report.unexpected == ("extra.weight",)
    assert len(report.matched) == len(model.state_dict()) - 3
    text = str(report)
    assert text.splitlines()[0] == report.summary()
    assert "fc.weight" in text and "file (1000, 512) vs model (10, 512)" in text
    assert "layer4.1.bn2.bias" in text and "extra.weight" in text
    assert "conv1.weight" not in text and "conv1.weight" in report.render(show_matched=True)
    assert parity_report(create_model("resnet18").state_dict(), create_model("resnet18")).ok


def test_non_strict_load_keeps_a_fresh_head(tmp_path: Path) -> None:
    source = create_model("resnet18")
    path = _save(source.state_dict(), tmp_path / "r18.pth")
    model, report = load_pretrained(path, "resnet18", strict=False, num_classes=10)
    assert report.head_classes == (1000, 10) and len(report.mismatched) == 2
    mine, theirs = model.state_dict(), source.state_dict()
    for key in report.matched:
        assert torch.equal(mine[key], theirs[key]), key
    assert mine["fc.weight"].shape == (10, 512)
    with pytest.raises(CheckpointError, match="holds a resnet18 .*not a vgg11: only 0 of") as e:
        load_pretrained(path, "vgg11", strict=False)
    _one_line(e)


def test_another_architecture_is_named_with_the_model_to_use(tmp_path: Path) -> None:
    # A ResNet-18 file given for a ResNet-50: both names, the counts, and the --model fix.
    path = _save(create_model("resnet18", num_classes=7).state_dict(), tmp_path / "best.pth")
    for strict in (True, False):
        with pytest.raises(CheckpointError) as e:
            load_pretrained(path, create_model("resnet50"), strict=strict)
        msg = _one_line(e)
        assert "holds a resnet18 (7 classes), not a resnet50: only " in msg
        assert "use --model resnet18" in msg and " of 320 tensors match" in msg
    # Same tensors, different stride placement: both names are given.
    path50 = _save(create_model("resnet50").state_dict(), tmp_path / "r50.pth")
    with pytest.raises(CheckpointError, match="holds a resnet50 or resnet50_v1_5 .*not a resnet18"):
        load_pretrained(path50, "resnet18")
    assert architectures_of(torch.load(path50))[0][:2] == ["resnet50", "resnet50_v1_5"]


# --------------------------------------------------------------------------- timm, safetensors


def test_timm_safetensors_file_loads(tmp_path: Path) -> None:
    # timm's resnet50 is torchvision's v1.5 net key for key; timm publishes .safetensors.
    state = create_model("resnet50_v1_5").state_dict()
    path = tmp_path / "model.safetensors"
    save_file(dict(state), str(path))
    model, report = load_pretrained(path, "resnet50", layout="timm")
    assert report.ok and model.spec.placement == "v1.5"  # type: ignore[union-attr]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


# --------------------------------------------------------------------------- akamaster


class _AkaShortcut(nn.Module):
    """akamaster's option A: ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes//4, planes//4))``,
    zeros on both sides of the identity (ours appends them)."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _AkaBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = _AkaShortcut(planes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _AkaResNet(nn.Module):
    """github.com/akamaster/pytorch_resnet_cifar10 ``resnet.py``, module names included."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = [
                _AkaBlock(cin if b == 0 else planes, planes, 2 if i and not b else 1)
                for b in range(n)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = planes
        self.linear = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        for i in (1, 2, 3):
            out = getattr(self, f"layer{i}")(out)
        out = F.avg_pool2d(out, out.size()[3]).flatten(1)
        return self.linear(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("name", "n"), [("resnet20", 3), ("resnet32", 5)])
def test_akamaster_checkpoint_computes_the_same(tmp_path: Path, name: str, n: int) -> None:
    torch.manual_seed(0)
    reference = randomize_batchnorm(_AkaResNet(n))
    # As akamaster's trainer saves it: DataParallel keys, no BN counters (pre-0.4.1 files).
    state = {
        f"module.{k}": v
        for k, v in reference.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert "module.linear.weight" in state and "module.layer1.0.conv1.weight" in state
    path = tmp_path / "a.th"  # the pre-1.6 (non-zip) format of akamaster's published files
    torch.save(
        {"epoch": 200, "state_dict": state, "best_prec1": 91.7},
        path,
        _use_new_zipfile_serialization=False,
    )
    model, report = load_pretrained(path, name, layout="akamaster")
    assert report.ok and count_params(model) == count_params(reference)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(model.eval()(x), expected, rtol=1e-4, atol=1e-5)
        # Renaming alone (linear → fc) loads strictly but computes something else: the
        # channel permutation is what makes the two nets the same function.
        renamed = {k.removeprefix("module.").replace("linear.", "fc."): v for k, v in state.items()}
        naive = create_model(name).eval()
        naive.load_state_dict(renamed, strict=False)
        assert not torch.allclose(naive(x), expected, atol=1e-3)


def test_akamaster_file_into_a_torchvision_net_is_named(tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in _AkaResNet(3).state_dict().items()}
    path = _save({"state_dict": state}, tmp_path / "a.th")
    with pytest.raises(CheckpointError, match="holds a resnet20 or plain20 .*not a resnet18") as e:
        load_pretrained(path, "resnet18", layout="akamaster")
    _one_line(e)


# --------------------------------------------------------------------------- downloads


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder (no internet needed), and an empty cache."""
    folder = tmp_path / "www"
    folder.mkdir()
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    with http_server(functools.partial(Quiet, directory=str(folder))) as base:
        yield base, folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_the_hash_and_caches(tmp_path: Path, served: tuple[str, Path]) -> None:
    base, folder = served
    state = create_model("resnet20").state_dict()
    scratch = _save(state, tmp_path / "r20.pth")
    name = f"resnet20-{_sha(scratch)[:8]}.pth"  # torchvision-style: hash prefix in the name
    scratch.rename(folder / name)
    model, report = load_pretrained(f"{base}/{name}", "resnet20")
    assert report.ok and torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])
    cached = list((tmp_path / "cache" / "checkpoints").rglob("*"))
    assert [p.name for p in cached if p.is_file()] == [name]
    (folder / name).unlink()  # the server now answers 404: a second load uses the cache
    assert torch.equal(read_state_dict(f"{base}/{name}")["conv1.weight"], state["conv1.weight"])


def test_wrong_hash_is_refused_and_deleted(tmp_path: Path, served: tuple[str, Path]) -> None:
    base, folder = served
    _save(create_model("resnet20").state_dict(), folder / "model.pth")
    with pytest.raises(CheckpointError, match="has SHA-256 .* expected 00000000.*refused") as e:
        read_state_dict(f"{base}/model.pth", sha256="0" * 64)
    _one_line(e)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    right = _sha(folder / "model.pth")
    assert read_state_dict(f"{base}/model.pth", sha256=right[:12])  # the same file, right hash


def test_download_errors_are_one_line(served: tuple[str, Path]) -> None:
    base, _ = served
    with pytest.raises(CheckpointError, match="pass sha256=") as e:
        read_state_dict(f"{base}/model.pth")  # no hash given, none in the name
    _one_line(e)
    with pytest.raises(CheckpointError, match="HTTP 404") as e:
        read_state_dict(f"{base}/gone.pth", sha256="ab" * 32)
    _one_line(e)
    with socket.socket() as s:  # a port nobody listens on: as good as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CheckpointError, match=r"cannot download .*offline\?") as e:
        read_state_dict(f"http://127.0.0.1:{port}/resnet20-12fca82f.th")
    _one_line(e)


def test_pretrained_flag_reads_akamaster_files_as_the_same_function(
    tmp_path: Path, log_lines: list[str]
) -> None:
    """``train --pretrained akamaster.th`` (fine-tuning) converts the layout as
    ``load_pretrained(layout="akamaster")`` does: the initialised net computes what
    akamaster's does. Without the conversion most tensors would match by name and load, and
    the net would silently compute something else."""
    from resnetlab.train.build import init_from_pretrained

    torch.manual_seed(0)
    reference = randomize_batchnorm(_AkaResNet(3))
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    path = _save({"state_dict": state}, tmp_path / "a.th")
    logged = log_lines
    model = create_model("resnet20")
    init_from_pretrained(model, str(path))
    assert any("akamaster" in m for m in logged)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x), rtol=1e-4, atol=1e-5)


def test_akamaster_option_b_is_refused_in_one_line() -> None:
    state = {f"{k}": v for k, v in _AkaResNet(3).state_dict().items()}
    state["layer2.0.shortcut.0.weight"] = torch.zeros(32, 16, 1, 1)
    with pytest.raises(CheckpointError, match="option-B") as e:
        from_akamaster(state)
    _one_line(e)
