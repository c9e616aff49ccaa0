"""The weights catalogue and published files in every command: legacy and zip files with
foreign layouts, recognition by SHA-256, downloads from a local server, the publisher's
preprocessing."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import math
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from conftest import cli, http_server, meta_model
from resnetlab.analysis import count_params
from resnetlab.data.augment import eval_transform, normalize
from resnetlab.infer.folding import randomize_batchnorm
from resnetlab.infer.predict import Predictor
from resnetlab.interop import weights as catalogue
from resnetlab.interop.fact_sheet import (
    CIFAR10_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    imagenet_classes,
)
from resnetlab.interop.weights import (
    UnknownWeightsError,
    find_by_sha256,
    get_weights,
    list_weights,
)
from resnetlab.models import create_model
from test_compat import _AkaResNet

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- the catalogue


def test_catalogue_has_torchvision_v1_v2_and_akamaster() -> None:
    names = {w.name for w in list_weights()}
    tv = {
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnext50_32x4d",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "wide_resnet50_2",
        "wide_resnet101_2",
    }
    assert {f"{a}.tv_in1k" for a in tv} <= names
    v2 = tv - {"resnet18", "resnet34", "resnext101_64x4d"}  # torchvision published no V2
    assert {f"{a}.tv2_in1k" for a in v2} <= names
    assert {f"resnet{d}.akamaster_cifar10" for d in (20, 32, 44, 56, 110, 1202)} <= names
    archs = [f"resnet{d}" for d in (18, 34, 50, 101, 152)] + ["resnext50_32x4d"]
    timm = {f"{a}.{tag}_in1k" for a in archs for tag in ("a1", "a2", "a3")}  # tv's keys
    assert timm <= names
    chenyaofo = {f"resnet{d}.chenyaofo_{c}" for d in (20, 32, 44, 56) for c in _CIFARS}
    assert chenyaofo <= names
    assert set(_TIMM_CSV) <= names  # timm's other tags for these architectures
    # Unique names; 33 timm tags beyond RSB (their tv/tv2 copies are torchvision's files).
    assert len(names) == len(list_weights()) == 10 + 7 + 6 + 18 + 8 + 33


_CIFARS = ("cifar10", "cifar100")
_RSB_TAGS = ("a1_in1k", "a2_in1k", "a3_in1k")
# chenyaofo's README (#Params.(M), CIFAR-10 and CIFAR-100 tables): its option-B nets.
_CHENYAOFO_MILLIONS = {
    "cifar10": {20: "0.27", 32: "0.47", 44: "0.66", 56: "0.86"},
    "cifar100": {20: "0.28", 32: "0.47", 44: "0.67", 56: "0.86"},
}


def test_every_entry_fits_its_model_with_the_published_parameter_count() -> None:
    # Table 6 of the paper / akamaster's README round the CIFAR counts.
    cifar_millions = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}
    for w in list_weights():
        model = meta_model(w.model, **w.model_kwargs())
        n = count_params(model)
        depth = w.model.removeprefix("resnet")
        published = None
        if w.layout == "akamaster":
            published = cifar_millions[int(depth)]
        elif ".chenyaofo_" in w.name:
            published = _CHENYAOFO_MILLIONS[w.name.split("_", 1)[1]][int(depth)]
        if published is not None:
            assert f"{n / 1e6:.{len(published.split('.')[1])}f}" == published, w.name
            assert n == w.num_params, w.name
        else:
            assert n == w.num_params, w.name
        if w.layout == "timm":  # the Hub's files carry no hash in their name or card
            assert w.sha256 == "" and w.file_name == "model.safetensors", w.name
        else:
            assert w.sha256 in w.file_name and len(w.sha256) >= 8, w.name
        assert w.url.startswith("https://") and w.licence and w.source, w.name


def test_published_facts() -> None:
    v1, v2 = get_weights("resnet50.tv_in1k"), get_weights("resnet50.tv2_in1k")
    assert v1.model == v2.model == "resnet50_v1_5"  # torchvision's stride placement
    assert (v1.top1, v1.top5, v1.preprocessing.resize) == (76.130, 92.862, 256)
    assert (v2.top1, v2.top5, v2.preprocessing.resize) == (80.858, 95.434, 232)
    assert v2.url == "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
    aka = get_weights("resnet56.akamaster_cifar10")
    # akamaster normalises CIFAR with ImageNet's statistics: the classic 10% trap.
    assert aka.preprocessing.mean == IMAGENET_MEAN and aka.preprocessing.resize is None
    assert aka.top1 == 93.39 and aka.classes[0] == "airplane" and "legacy" in aka.file_format


def test_timm_rsb_facts() -> None:
    # timm's results/results-imagenet.csv (top-1/top-5) and timm/models/resnet.py's
    # pretrained cfgs (_rcfg for A1/A2: test 288, test_crop_pct 1.0; _r3cfg for A3: trained
    # at 160, test 224, test_crop_pct 0.95, so timm resizes to floor(224 / 0.95) = 235).
    figures = {
        "resnet18.a1_in1k": (73.158, 91.026),
        "resnet50.a1_in1k": (81.214, 95.102),
        "resnet18.a2_in1k": (72.372, 90.596),
        "resnet34.a2_in1k": (77.158, 93.274),
        "resnet50.a2_in1k": (80.772, 94.988),
        "resnet101.a2_in1k": (82.236, 95.730),
        "resnet152.a2_in1k": (82.608, 95.752),
        "resnext50_32x4d.a2_in1k": (81.304, 95.096),
        "resnet18.a3_in1k": (68.254, 88.176),
        "resnet34.a3_in1k": (72.970, 91.108),
        "resnet50.a3_in1k": (78.048, 93.780),
        "resnet101.a3_in1k": (79.814, 94.606),
        "resnet152.a3_in1k": (80.546, 95.000),
        "resnext50_32x4d.a3_in1k": (79.268, 94.306),
    }
    for name, (top1, top5) in figures.items():
        w = get_weights(name)
        assert (w.top1, w.top5) == (top1, top5), name
        pp = w.preprocessing
        want = (288, 288) if ".a3_" not in name else (224, 235)
        assert (pp.crop, pp.resize, pp.interpolation) == (*want, "bicubic"), name
        assert f"at {want[0]} px" in w.metric_data, name
        assert pp.mean == IMAGENET_MEAN and pp.std == IMAGENET_STD
        assert w.url == f"https://huggingface.co/timm/{w.name}/resolve/main/model.safetensors"
        assert w.licence.startswith("Apache-2.0") and w.layout == "timm" and not w.model_options
    r18, r50 = get_weights("resnet18.a3_in1k"), get_weights("resnet50.a2_in1k")
    assert (r18.model, r50.model) == ("resnet18", "resnet50_v1_5")  # stride in the 3×3
    assert get_weights("resnext50_32x4d.a1_in1k").model == "resnext50_32x4d"
    assert "trained at 160" in r18.metric_data
    # No published hash must not mean "matches every file".
    assert find_by_sha256("ab" * 32) is None


# timm's results/results-imagenet.csv (commit 0173a139 of huggingface/pytorch-image-models),
# the rows of the tags beyond RSB's A1/A2/A3: top-1, top-5, img_size, crop_pct,
# interpolation, transcribed here to check the catalogue's table against.
_BICUBIC_288 = (288, 1.0, "bicubic")  # _rcfg: test_input_size 288, test_crop_pct 1.0
_TTCFG = (288, 0.95, "bicubic")  # _ttcfg: test_input_size 288, test_crop_pct 0.95
_GLUON = (224, 0.875, "bicubic")  # _gcfg: _cfg's 224 and 0.875, bicubic
_FB = (224, 0.875, "bilinear")  # _cfg as it is
_TIMM_CSV: dict[str, tuple[float, float, tuple[int, float, str]]] = {
    "resnet50.a1h_in1k": (80.676, 95.306, (224, 1.0, "bicubic")),
    "resnet101.a1h_in1k": (82.778, 96.310, _BICUBIC_288),
    "resnet152.a1h_in1k": (83.450, 96.538, _BICUBIC_288),
    "resnext50_32x4d.a1h_in1k": (82.014, 95.934, _BICUBIC_288),
    "resnet50.b1k_in1k": (80.706, 95.432, _BICUBIC_288),
    "resnet50.b2k_in1k": (80.454, 95.318, _BICUBIC_288),
    "resnet50.c1_in1k": (80.912, 95.552, _BICUBIC_288),
    "resnet50.c2_in1k": (80.870, 95.534, _BICUBIC_288),
    "resnet50.d_in1k": (80.972, 95.430, _BICUBIC_288),
    "resnext101_64x4d.c1_in1k": (83.156, 96.374, _BICUBIC_288),
    "resnet50.ram_in1k": (79.976, 95.052, _TTCFG),
    "resnet50.ra_in1k": (79.836, 94.966, _TTCFG),
    "resnext50_32x4d.ra_in1k": (80.698, 95.390, _TTCFG),
    "resnet34.bt_in1k": (76.480, 93.354, _TTCFG),
    "resnet50.bt_in1k": (79.640, 94.892, _TTCFG),
    "wide_resnet50_2.racm_in1k": (82.280, 96.064, _TTCFG),
    "resnet50.am_in1k": (78.998, 94.396, (224, 0.875, "bicubic")),
    "resnet18.gluon_in1k": (70.838, 89.754, _GLUON),
    "resnet34.gluon_in1k": (74.578, 91.984, _GLUON),
    "resnet50.gluon_in1k": (77.580, 93.718, _GLUON),
    "resnet101.gluon_in1k": (79.310, 94.522, _GLUON),
    "resnet152.gluon_in1k": (79.694, 94.736, _GLUON),
    "resnext50_32x4d.gluon_in1k": (79.360, 94.430, _GLUON),
    "resnext101_64x4d.gluon_in1k": (80.600, 94.992, _GLUON),
    "resnet18.fb_ssl_yfcc100m_ft_in1k": (72.594, 91.418, _FB),
    "resnet50.fb_ssl_yfcc100m_ft_in1k": (79.234, 94.826, _FB),
    "resnext50_32x4d.fb_ssl_yfcc100m_ft_in1k": (80.338, 95.398, _FB),
    "resnext101_32x8d.fb_ssl_yfcc100m_ft_in1k": (81.606, 96.040, _FB),
    "resnet18.fb_swsl_ig1b_ft_in1k": (73.282, 91.732, _FB),
    "resnet50.fb_swsl_ig1b_ft_in1k": (81.182, 95.992, _FB),
    "resnext50_32x4d.fb_swsl_ig1b_ft_in1k": (82.174, 96.222, _FB),
    "resnext101_32x8d.fb_swsl_ig1b_ft_in1k": (84.302, 97.176, _FB),
    "resnext101_32x8d.fb_wsl_ig1b_ft_in1k": (82.698, 96.632, _FB),
}
# timm's architecture → the resnetlab model with its keys (and its stride placement: timm's
# bottlenecks stride in the 3×3, as torchvision's v1.5).
_TIMM_MODELS = {
    "resnet50": "resnet50_v1_5",
    "resnet101": "resnet101_v1_5",
    "resnet152": "resnet152_v1_5",
}


def _timm_entries() -> list[Any]:
    return [w for w in list_weights() if w.layout == "timm"]


def test_timm_tags_are_the_published_rows() -> None:
    rsb = {w.name for w in _timm_entries() if w.name.split(".")[1] in _RSB_TAGS}
    assert {w.name for w in _timm_entries()} - rsb == set(_TIMM_CSV)
    for name, (top1, top5, (size, crop_pct, interpolation)) in _TIMM_CSV.items():
        w = get_weights(name)
        assert (w.top1, w.top5) == (top1, top5), name
        pp = w.preprocessing  # timm resizes the shorter side to floor(size / crop_pct)
        assert (pp.crop, pp.resize) == (size, math.floor(size / crop_pct)), name
        assert pp.interpolation == interpolation, name
        assert pp.mean == IMAGENET_MEAN and pp.std == IMAGENET_STD, name
        assert f"at {size} px" in w.metric_data, name
        assert w.url == f"https://huggingface.co/timm/{name}/resolve/main/model.safetensors"
        assert w.sha256 == "" and w.num_classes == 1000 and not w.model_options, name


def test_timm_tags_per_tag_facts(capsys: pytest.CaptureFixture[str]) -> None:
    # resnet50.a1h's cfg overrides _rcfg: trained at 176 (crop_pct 0.9), tested at 224 with
    # test_crop_pct 1.0, so no resize margin; the other a1h files keep _rcfg's 288.
    a1h, a1h_101 = get_weights("resnet50.a1h_in1k"), get_weights("resnet101.a1h_in1k")
    assert (a1h.preprocessing.crop, a1h.preprocessing.resize) == (224, 224)
    assert a1h.metric_data.endswith("at 224 px (trained at 176)")
    assert (a1h_101.preprocessing.crop, a1h_101.preprocessing.resize) == (288, 288)
    assert a1h_101.metric_data.endswith("(trained at 224)")
    # _ttcfg: 288 at test_crop_pct 0.95, i.e. shorter side floor(303.2) = 303.
    assert get_weights("resnet50.ram_in1k").preprocessing.resize == 303
    assert get_weights("resnet50.am_in1k").preprocessing.resize == 256  # _tcfg: 224 / 0.875
    # Ported weights: the cfg's 224 is no training size, so none is claimed.
    for name in ("resnet50.gluon_in1k", "resnext101_32x8d.fb_wsl_ig1b_ft_in1k"):
        assert "trained at" not in get_weights(name).metric_data, name
    # Facebook's weights carry the cfg's non-commercial licence; the rest Apache-2.0, read
    # on the Hub's pages except where the entry says it is assumed.
    fb = {w.name for w in _timm_entries() if ".fb_" in w.name}
    assert len(fb) == 9  # ssl and swsl for 18, 50, ResNeXt-50 and 101 32x8d; wsl for the last
    assumed = {w.name for w in _timm_entries() if "assumed" in w.licence}
    assert assumed == {
        "resnet50.b2k_in1k",
        "resnet50.am_in1k",
        "resnet50.gluon_in1k",
        "resnet101.gluon_in1k",
        "resnet152.gluon_in1k",
        "resnext101_64x4d.c1_in1k",
        "resnet18.a2_in1k",
        "resnet34.a2_in1k",
        "resnet50.a3_in1k",
        "resnet101.a1_in1k",
        "resnet101.a3_in1k",
        "resnet152.a2_in1k",
        "resnet152.a3_in1k",
    }
    for w in _timm_entries():
        want = "CC-BY-NC-4.0" if w.name in fb else "Apache-2.0"
        assert w.licence.startswith(want), w.name
        assert ("non-commercial" in w.licence) == (w.name in fb), w.name
    code, out, _ = cli(capsys, "weights", "resnet50.a1h*")
    assert code == 0 and "resize 224 (bicubic), centre crop 224" in out
    assert "at 224 px (trained at 176)" in out and "→  resnet50_v1_5" in out
    code, out, _ = cli(capsys, "weights", "resnet18.fb_ssl*")
    assert code == 0 and "resize 256 (bilinear), centre crop 224" in out
    assert "CC-BY-NC-4.0" in out


def test_timm_tv_copies_are_torchvision_entries() -> None:
    # timm's tv/tv2 tags re-host torchvision's files: the catalogue has torchvision's own
    # under those names (one entry each, hash-checked), not a second, unverified copy.
    for w in list_weights("*.tv*_in1k"):
        assert w.layout == "torchvision" and w.sha256, w.name
        assert w.url.startswith("https://download.pytorch.org/models/"), w.name
    # timm's tv2 cfgs evaluate at 224 with test_crop_pct 0.965: floor(224 / 0.965) = 232,
    # torchvision's resize_size for its V2 weights.
    for w in list_weights("*.tv2_in1k"):
        assert w.preprocessing.resize == math.floor(224 / 0.965) == 232, w.name


def test_every_timm_entry_resolves_and_eval_applies_its_preprocessing() -> None:
    from resnetlab.interop.compat import ParityReport
    from resnetlab.interop.published import LoadedWeights
    from resnetlab.models.registry import get_entry

    entries = _timm_entries()
    assert len(entries) == 18 + 33
    for w in entries:
        arch = w.name.split(".")[0]
        assert w.model == _TIMM_MODELS.get(arch, arch), w.name
        assert get_entry(w.model).name == w.model  # a registered resnetlab model
        # What eval and predict build from the entry (Predictor.from_published).
        loaded = LoadedWeights(
            torch.nn.Identity(),
            w.model,
            "timm",
            w.preprocessing,
            w.class_names(),
            w,
            ParityReport((), (), (), ()),
            Path(w.file_name),
            False,
            {},
        )
        p = Predictor.from_published(loaded, device="cpu")
        pp, side = w.preprocessing, w.preprocessing.resize
        assert p.data_size == (3, side, side) and p.preprocess.image_size == pp.crop, w.name
        assert p.preprocess.resize_side == side and len(p.classes) == 1000, w.name
        x = torch.randint(0, 256, (1, 3, side, side), dtype=torch.uint8)
        top = round((side - pp.crop) / 2)  # torchvision's CenterCrop, as timm's
        crop = x[..., top : top + pp.crop, top : top + pp.crop]
        torch.testing.assert_close(
            eval_transform(x, p.preprocess), normalize(crop, IMAGENET_MEAN, IMAGENET_STD)
        )


def test_chenyaofo_facts() -> None:
    # chenyaofo/pytorch-cifar-models: README.md (URLs, top-1/top-5), the training logs
    # (data.mean/std), pytorch_cifar_models/resnet.py (option-B shortcuts), LICENSE.
    c10, c100 = (
        get_weights("resnet56.chenyaofo_cifar10"),
        get_weights("resnet20.chenyaofo_cifar100"),
    )
    assert c10.url == (
        "https://github.com/chenyaofo/pytorch-cifar-models/releases/download/resnet/"
        "cifar10_resnet56-187c023a.pt"
    )
    assert (c10.top1, c10.top5, c100.top1, c100.top5) == (94.37, 99.83, 68.83, 91.01)
    assert (c10.sha256, c100.sha256) == ("187c023a", "23dac2f1")
    assert c10.preprocessing == Preprocessing(
        32, None, "none", (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201)
    )  # CIFAR-10's own statistics (the log's), not ImageNet's as akamaster's
    assert c100.preprocessing.mean == (0.507, 0.4865, 0.4409)
    assert c100.preprocessing.std == (0.2673, 0.2564, 0.2761)
    assert (c10.num_classes, c100.num_classes) == (10, 100)
    assert (
        c10.classes == CIFAR10_CLASSES and c100.classes == () and "CIFAR-100" in c100.classes_source
    )
    assert (c10.eval_data, c100.eval_data) == (("cifar10", "test"), ("cifar100", "test"))
    for w in (c10, c100):
        assert w.layout == "torchvision" and w.model_options == (("shortcut", "B"),)
        assert w.model_kwargs() == {"shortcut": "B", "num_classes": w.num_classes}
        assert w.licence.startswith("BSD-3-Clause")
    assert [get_weights(f"resnet{d}.chenyaofo_cifar10").top1 for d in (20, 32, 44)] == [
        92.60,
        93.53,
        94.01,
    ]


def test_imagenet_class_names_come_with_imagenet_weights() -> None:
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"
    assert (names[281], names[404], names[207]) == ("tabby", "airliner", "golden retriever")
    # torchvision's list as published: two names repeat (a bird and a machine; two suits).
    assert names[134] == names[517] == "crane" and names[638] == names[639] == "maillot"
    for w in list_weights():
        # CIFAR-100's names are read from the dataset; the entries name their source only.
        want = {10: CIFAR10_CLASSES, 100: (), 1000: names}[w.num_classes]
        assert w.class_names() == want, w.name


def test_unknown_names_and_patterns() -> None:
    with pytest.raises(UnknownWeightsError, match=r"did you mean resnet50\.tv_in1k"):
        get_weights("resnet50.tv_in1")
    assert [w.name for w in list_weights("wide_resnet50*")] == [
        "wide_resnet50_2.tv_in1k",
        "wide_resnet50_2.tv2_in1k",
        "wide_resnet50_2.racm_in1k",
    ]
    tags = ("tv", "tv2", "a1", "a2", "a3", "a1h", "b1k", "b2k", "c1", "c2", "d", "ram", "ra")
    tags += ("bt", "am", "gluon", "fb_ssl_yfcc100m_ft", "fb_swsl_ig1b_ft")
    assert {w.name for w in list_weights("resnet50_v1_5")} == {f"resnet50.{t}_in1k" for t in tags}


def test_weights_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "weights", "resnet20*")
    assert code == 0 and "resnet20-12fca82f.th" in out and "BSD-2-Clause" in out
    assert "top-1 91.73% on CIFAR-10 test" in out
    code, out, _ = cli(capsys, "weights", "resnet18.a1*")
    assert code == 0 and "sha256:     none published" in out and "at 288 px" in out
    code, out, _ = cli(capsys, "weights", "resnet44.chenyaofo_cifar100")
    assert code == 0 and "→  resnet44, shortcut=B (torchvision layout, 100 classes)" in out
    code, out, _ = cli(capsys, "weights", "resnet44.chenyaofo*", "--format", "json")
    assert [r["model_options"] for r in json.loads(out)] == [[["shortcut", "B"]]] * 2
    code, out, _ = cli(capsys, "weights", "resnet18.tv*", "--format", "json")
    (row,) = json.loads(out)
    assert row["sha256"] == "f37072fd" and row["preprocessing"]["resize"] == 256
    code, _, err = cli(capsys, "weights", "nothing*")
    assert code == 2 and err.count("\n") == 1 and "no published weights match" in err


# --------------------------------------------------------------------------- published files


def _aka_reference() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(_AkaResNet(3)).eval()


def _save_aka(model: torch.nn.Module, path: Path) -> Path:
    """As akamaster's trainer saved it: DataParallel keys, no BN counters, pre-1.6 format."""
    state = {
        f"module.{k}": v
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    torch.save(
        {"epoch": 200, "state_dict": state, "best_prec1": 91.7},
        path,
        _use_new_zipfile_serialization=False,
    )
    assert path.read_bytes()[:1] == b"\x80"  # a legacy pickle, not a zip
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _catalogue_with(monkeypatch: pytest.MonkeyPatch, entry: Any) -> None:
    monkeypatch.setattr(catalogue, "WEIGHTS", (*catalogue.WEIGHTS, entry))


@pytest.fixture
def aka(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    ref = _aka_reference()
    return _save_aka(ref, tmp_path / "resnet20-local.th"), ref


def test_legacy_foreign_file_needs_model_then_matches(
    aka: tuple[Path, torch.nn.Module], capsys: pytest.CaptureFixture[str]
) -> None:
    path, ref = aka
    code, _, err = cli(capsys, "eval", str(path), "--data", "sample")
    assert code == 2 and err.count("\n") == 1 and "give --model NAME" in err
    p = Predictor.load(path, model="resnet20", device="cpu")
    assert p.published is not None and p.published.assumed and p.published.layout == "akamaster"
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        want = ref(normalize(x, IMAGENET_MEAN, IMAGENET_STD)).softmax(1)
    torch.testing.assert_close(p.probabilities(x), want, rtol=1e-4, atol=1e-5)


def test_catalogued_file_is_known_by_its_hash_and_its_preprocessing_is_applied(
    aka: tuple[Path, torch.nn.Module],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, ref = aka
    entry = dataclasses.replace(
        get_weights("resnet20.akamaster_cifar10"), name="resnet20.test", sha256=_sha(path)[:8]
    )
    _catalogue_with(monkeypatch, entry)
    renamed = shutil.copy(path, tmp_path / "whatever.pt")  # the content, not the name, counts
    p = Predictor.load(renamed, device="cpu")
    assert p.weights == entry and not p.published.assumed  # type: ignore[union-attr]
    assert p.classes == entry.classes and p.config.data.source == "cifar10"
    # What eval applies is the publisher's normalisation, not the data's own statistics.
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    applied = eval_transform(x, p.preprocess)
    torch.testing.assert_close(applied, normalize(x, IMAGENET_MEAN, IMAGENET_STD))
    with torch.no_grad():
        want = ref(applied).softmax(1)
        other = ref(normalize(x, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))).softmax(1)
    torch.testing.assert_close(p.probabilities(x), want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(want, other, atol=1e-3)  # the control: it would show
    code, out, err = cli(capsys, "eval", str(renamed), "--data", "sample")
    assert code == 0, err
    assert "resnet20.test: resnet20, akamaster layout; preprocessing (the publisher's)" in err
    assert "published: top-1 91.73% on CIFAR-10 test (10,000 images); measured: top-1" in out
    assert "this data differs from theirs" in out


def test_imagenet_weights_resize_then_centre_crop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    ref = randomize_batchnorm(create_model("resnet18")).eval()
    path = tmp_path / "r18.pth"  # zip format, DataParallel keys
    torch.save({"model": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    entry = dataclasses.replace(
        get_weights("resnet50.tv2_in1k"),
        name="resnet18.test",
        model="resnet18",
        sha256=_sha(path)[:10],
    )
    _catalogue_with(monkeypatch, entry)
    p = Predictor.load(path, device="cpu")
    assert p.data_size == (3, 232, 232) and p.preprocess.image_size == 224
    x = torch.randint(0, 256, (2, 3, 232, 232), dtype=torch.uint8)
    crop = normalize(x[..., 4:228, 4:228], IMAGENET_MEAN, IMAGENET_STD)  # (232 - 224) / 2
    torch.testing.assert_close(eval_transform(x, p.preprocess), crop)
    with torch.no_grad():
        torch.testing.assert_close(p.probabilities(x), ref(crop).softmax(1), rtol=1e-4, atol=1e-5)


def test_zip_pt_and_safetensors_with_torchvision_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    state = create_model("resnet18", num_classes=3).state_dict()
    pt = tmp_path / "model.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, pt)
    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    image = tmp_path / "photo.jpg"
    Image.new("RGB", (300, 200), (200, 30, 40)).save(image)
    for file in (pt, st):
        code, out, err = cli(capsys, "predict", str(file), str(image), "--model", "resnet18")
        assert code == 0, err
        assert out.startswith(f"{image}: class ") and "torchvision layout" in err
    code, out, err = cli(
        capsys, "export", str(pt), "--model", "resnet18", "-o", str(tmp_path / "out.safetensors")
    )
    assert code == 0, err
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["model"] == "resnet18" and json.loads(meta["data_size"]) == [3, 256, 256]


def test_legacy_file_with_a_pickled_class_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.th"
    state = {f"module.{k}": v for k, v in _AkaResNet(3).state_dict().items()}
    torch.save(
        {"state_dict": state, "args": _Namespace()}, path, _use_new_zipfile_serialization=False
    )
    for command in ("eval", "bench"):
        code, _, err = cli(
            capsys, command, str(path), "--model" if command == "eval" else "--arch", "resnet20"
        )
        assert code == 2 and err.count("\n") == 1, err
        assert "refused, it would run code on loading" in err


class _Namespace:
    """A class of the test's own, as akamaster-era files pickled ``argparse.Namespace``."""


def test_bench_a_published_file(
    aka: tuple[Path, torch.nn.Module], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = aka
    code, out, err = cli(
        capsys,
        "bench",
        str(path),
        "--arch",
        "resnet20",
        "--engines",
        "eager",
        "--seconds",
        "0.05",
        "--batch-size",
        "2",
    )
    assert code == 0, err
    assert "batch 2×3×32×32" in out and "picked: eager" in out


# --------------------------------------------------------------------------- downloads


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "www"
    folder.mkdir()
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    with http_server(functools.partial(Quiet, directory=str(folder))) as base:
        yield base, folder


def _served_entry(base: str, folder: Path, sha: str | None = None) -> Any:
    path = _save_aka(_aka_reference(), folder / "resnet20-served.th")
    return dataclasses.replace(
        get_weights("resnet20.akamaster_cifar10"),
        name="resnet20.served",
        url=f"{base}/{path.name}",
        sha256=sha or _sha(path)[:8],
    )


def test_catalogue_name_downloads_with_the_hash_check(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, folder = served
    _catalogue_with(monkeypatch, _served_entry(base, folder))
    p = Predictor.load("resnet20.served", device="cpu")
    assert p.weights is not None and p.weights.name == "resnet20.served"
    cached = [f for f in (tmp_path / "cache").rglob("*") if f.is_file()]
    assert [f.name for f in cached] == ["resnet20-served.th"]
    (folder / "resnet20-served.th").unlink()  # gone from the server: the cache serves it
    assert Predictor.load("resnet20.served", device="cpu").weights is not None


def test_wrong_hash_is_refused_and_nothing_is_left(
    served: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, folder = served
    _catalogue_with(monkeypatch, _served_entry(base, folder, sha="0" * 8))
    code, _, err = cli(capsys, "eval", "resnet20.served")
    assert code == 2 and err.count("\n") == 1
    assert "expected 00000000" in err and "refused and deleted" in err
    assert not [f for f in (tmp_path / "cache").rglob("*") if f.is_file()]


def test_offline_says_which_file_to_put_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    with socket.socket() as s:  # a port nobody listens on: as good as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = dataclasses.replace(
        get_weights("resnet20.akamaster_cifar10"),
        url=f"http://127.0.0.1:{port}/resnet20-12fca82f.th",
    )
    monkeypatch.setattr(catalogue, "WEIGHTS", (entry,))
    code, _, err = cli(capsys, "predict", "resnet20.akamaster_cifar10", "x.png")
    target = tmp_path / "cache" / "checkpoints" / "12fca82f" / "resnet20-12fca82f.th"
    assert code == 2 and err.count("\n") == 1
    assert f"fetch that file elsewhere and put it at {target}" in err


def test_pretrained_name_keeps_the_weights_normalisation(
    served: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, folder = served
    _catalogue_with(monkeypatch, _served_entry(base, folder))
    code, out, err = cli(
        capsys,
        "train",
        "--recipe",
        "paper-cifar",
        "--model",
        "resnet20",
        "--data",
        "sample",
        "--limit-per-class",
        "3",
        "--batch-size",
        "10",
        "--epochs",
        "1",
        "--precision",
        "fp32",
        "--no-test",
        "--pretrained",
        "resnet20.served",
        "--out",
        str(tmp_path / "runs"),
        "--name",
        "ft",
    )
    assert code == 0, err
    assert "published weights resnet20.served" in out
    from resnetlab.runtime.checkpoint import load_checkpoint

    state = load_checkpoint(tmp_path / "runs" / "ft" / "last.pt")
    assert tuple(state["preprocess"]["mean"]) == IMAGENET_MEAN


def test_weights_without_a_published_hash_are_not_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    code, _, err = cli(capsys, "predict", "resnet18.a1_in1k", "x.png")
    target = tmp_path / "cache/checkpoints/unverified/resnet18.a1_in1k/model.safetensors"
    assert code == 2 and err.count("\n") == 1
    assert "has no published SHA-256" in err and f"put it at {target}" in err
    assert not target.parent.exists()  # nothing fetched, nothing half-written


def test_a_file_put_in_place_by_hand_predicts_imagenet_class_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "cache/checkpoints/unverified/resnet18.a1_in1k/model.safetensors"
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    save_file(create_model("resnet18").state_dict(), target)  # timm's keys are these
    Image.new("RGB", (300, 200), (200, 120, 40)).save(tmp_path / "photo.jpg")
    p = Predictor.load("resnet18.a1_in1k", device="cpu")
    assert p.classes == imagenet_classes() and p.preprocess.image_size == 288
    code, out, err = cli(capsys, "predict", "resnet18.a1_in1k", str(tmp_path / "photo.jpg"))
    assert code == 0, err
    assert "class " not in out and any(f" {name} " in out for name in imagenet_classes()), out


# --------------------------------------------------------------------------- chenyaofo's nets


class _Block(torch.nn.Module):
    """chenyaofo's unit as its resnet.py describes it: torchvision's basic block (3×3 conv,
    BN, ReLU, 3×3 conv, BN, + shortcut, ReLU) whose shortcut, where the stride or the width
    changes, is ``downsample = Sequential(1×1 conv with the stride, BN)``."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        conv = functools.partial(torch.nn.Conv2d, kernel_size=3, padding=1, bias=False)
        self.conv1, self.bn1 = conv(cin, cout, stride=stride), torch.nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv(cout, cout), torch.nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                torch.nn.BatchNorm2d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))
        return (y + (x if self.downsample is None else self.downsample(x))).relu()


class _ChenyaofoNet(torch.nn.Module):
    """Its CifarResNet: 3×3 conv to 16 + BN + ReLU, three stages of n blocks (16, 32, 64
    channels, strides 1, 2, 2), global average pool, ``fc``."""

    def __init__(self, n: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(16)
        cin = 16
        for i, (width, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = [
                _Block(cin if b == 0 else width, width, stride if b == 0 else 1) for b in range(n)
            ]
            setattr(self, f"layer{i}", torch.nn.Sequential(*blocks))
            cin = width
        self.fc = torch.nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x)).relu()
        x = self.layer3(self.layer2(self.layer1(x)))  # type: ignore[operator]
        return self.fc(x.mean((2, 3)))


def _catalogue_replacing(monkeypatch: pytest.MonkeyPatch, entry: Any) -> None:
    """The catalogue with ``entry`` in place of the entry of the same name."""
    new = tuple(entry if w.name == entry.name else w for w in catalogue.WEIGHTS)
    monkeypatch.setattr(catalogue, "WEIGHTS", new)


def _save_chenyaofo(name: str, folder: Path) -> tuple[Path, torch.nn.Module, Any]:
    """The entry's net in chenyaofo's layout, saved as its hub loader reads it (a bare
    state dict, ``torch.save``'s zip format: the logs show PyTorch 1.8.1), and the entry
    with that file's hash."""
    w = get_weights(name)
    torch.manual_seed(0)
    ref = randomize_batchnorm(_ChenyaofoNet((int(w.model[6:]) - 2) // 6, w.num_classes)).eval()
    path = folder / w.file_name
    torch.save(ref.state_dict(), path)
    return path, ref, dataclasses.replace(w, sha256=_sha(path)[:8])


@pytest.mark.parametrize(
    "name", [f"resnet{d}.chenyaofo_{c}" for c in _CIFARS for d in (20, 32, 44, 56)]
)
def test_chenyaofo_file_loads_key_for_key_with_its_preprocessing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, ref, entry = _save_chenyaofo(name, tmp_path)
    # Key for key, shape for shape, in order: the publisher's net is ours with option B.
    ours = create_model(entry.model, **entry.model_kwargs()).state_dict()
    theirs = ref.state_dict()
    assert [(k, v.shape) for k, v in theirs.items()] == [(k, v.shape) for k, v in ours.items()]
    # The control: the paper's option-A net of the same name does not take the file.
    from resnetlab.interop.compat import CheckpointError, load_pretrained

    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_pretrained(path, entry.model, num_classes=entry.num_classes)
    _catalogue_replacing(monkeypatch, entry)
    p = Predictor.load(path, device="cpu")  # known by its hash: no --model, no --layout
    assert p.weights == entry and p.published is not None and not p.published.assumed
    report = p.published.report
    assert report.ok and report.matched == tuple(ours)  # every tensor, nothing left over
    assert p.config.model.options["shortcut"] == "B" and p.config.data.source == entry.eval_data[0]
    assert len(p.classes) == entry.num_classes
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    applied = eval_transform(x, p.preprocess)
    pp = entry.preprocessing
    torch.testing.assert_close(applied, normalize(x, pp.mean, pp.std))
    # The control: ImageNet's statistics (akamaster's) would feed the net other inputs.
    assert (applied - normalize(x, IMAGENET_MEAN, IMAGENET_STD)).abs().max() > 0.1
    with torch.no_grad():
        want = ref(applied).softmax(1)
    torch.testing.assert_close(p.probabilities(x), want, rtol=1e-4, atol=1e-5)


def test_chenyaofo_name_in_eval_summary_and_pretrained(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_lines: list[str],
) -> None:
    name = "resnet20.chenyaofo_cifar10"
    path, ref, entry = _save_chenyaofo(name, tmp_path)
    _catalogue_replacing(monkeypatch, entry)
    code, out, err = cli(capsys, "eval", str(path), "--data", "sample")
    assert code == 0, err
    assert f"{name}: resnet20, torchvision layout; preprocessing (the publisher's)" in err
    assert "published: top-1 92.60%, top-5 99.81% on CIFAR-10 test" in out
    code, out, err = cli(capsys, "summary", name)  # the net the weights fit
    assert code == 0, err
    assert "Total params: 272,474" in out and "Shortcuts: B:" in out
    # train --pretrained NAME: the run's model gets the entry's shortcut option, so its
    # config (and every checkpoint) rebuilds the net the weights fit, and all of them load.
    from resnetlab.runtime.config import ConfigError, DataConfig, ModelConfig, TrainConfig
    from resnetlab.train.build import build_model, resolve_pretrained_options

    cfg = TrainConfig(
        recipe="paper-cifar",
        model=ModelConfig(name="resnet20", pretrained=str(path)),
        data=DataConfig(source="sample"),
    )
    resolved = resolve_pretrained_options(cfg)
    assert resolved.model.options == {"shortcut": "B"}
    lines = log_lines
    net = build_model(resolved, 10, 3)
    assert any("tensors loaded, 0 kept fresh" in line for line in lines), lines
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), ref(x))
    clash = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, options={"shortcut": "A"})
    )
    with pytest.raises(ConfigError, match="needs shortcut='B'"):
        resolve_pretrained_options(clash)


def test_timm_a3_weights_evaluate_at_timm_test_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A3 trains at 160 but timm evaluates (and publishes) at 224 with test_crop_pct 0.95:
    # the shorter side to floor(224 / 0.95) = 235, bicubic, then the centre 224.
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "cache/checkpoints/unverified/resnet18.a3_in1k/model.safetensors"
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    ref = randomize_batchnorm(create_model("resnet18")).eval()
    save_file(ref.state_dict(), target)
    p = Predictor.load("resnet18.a3_in1k", device="cpu")
    assert p.data_size == (3, 235, 235) and p.preprocess.image_size == 224
    assert p.preprocess.resize_side == 235 and p.published is not None
    assert p.published.report.ok
    x = torch.randint(0, 256, (1, 3, 235, 235), dtype=torch.uint8)
    # (235 - 224) / 2 = 5.5: the crop starts at 6, as torchvision's CenterCrop (timm's) does.
    crop = normalize(x[..., 6:230, 6:230], IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(eval_transform(x, p.preprocess), crop)
    with torch.no_grad():
        torch.testing.assert_close(p.probabilities(x), ref(crop).softmax(1), rtol=1e-4, atol=1e-5)


def test_timm_bt_weights_put_in_place_load_and_evaluate_at_303_to_288(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # resnet34.bt_in1k (_ttcfg): tested at 288 with test_crop_pct 0.95, so the shorter side
    # goes to floor(288 / 0.95) = 303 and the margin (303 - 288) / 2 = 7.5 rounds to 8.
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "cache/checkpoints/unverified/resnet34.bt_in1k/model.safetensors"
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    ref = randomize_batchnorm(create_model("resnet34")).eval()
    save_file(ref.state_dict(), target)  # timm's keys for its plain ResNet-34 are these
    p = Predictor.load("resnet34.bt_in1k", device="cpu")
    assert p.published is not None and p.published.report.ok and not p.published.assumed
    assert p.data_size == (3, 303, 303) and p.preprocess.image_size == 288
    x = torch.randint(0, 256, (1, 3, 303, 303), dtype=torch.uint8)
    crop = normalize(x[..., 8:296, 8:296], IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(eval_transform(x, p.preprocess), crop)
    with torch.no_grad():
        torch.testing.assert_close(p.probabilities(x), ref(crop).softmax(1), rtol=1e-4, atol=1e-5)
