"""Code written for timm or torchvision runs unchanged on resnetlab (issue 31)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from conftest import SHARED
from resnetlab.errors import CheckpointError, InvalidValueError
from resnetlab.interop import get_weights, published, transform_of
from resnetlab.interop.foreign_files import cache_path

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: a file not in the cache fails as it does offline (nothing is fetched)."""
    real = published.download_checkpoint

    def refuse(url: str, *, sha256: str | None = None) -> Path:
        if cache_path(url, sha256=sha256)[0].is_file():
            return real(url, sha256=sha256)  # checked against its hash, no network
        raise CheckpointError(f"cannot download {url}: offline (test)")

    monkeypatch.setattr(published, "download_checkpoint", refuse)


def test_a_timm_style_snippet_runs_unchanged(offline: None) -> None:
    # The calls of a timm fine-tuning script, as written for timm (only the import differs).
    create_model = resnetlab.create_model
    model = create_model(
        "resnet18",
        pretrained=False,
        num_classes=10,
        in_chans=3,
        drop_rate=0.2,
        drop_path_rate=0.1,
        global_pool="avg",
    )
    assert model.num_classes == 10
    assert model.num_features == 512
    assert model.get_classifier().out_features == 10
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["mean"] == (0.485, 0.456, 0.406)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (2, 512, 2, 2)
    pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape == (2, 512)
    assert torch.allclose(model.forward_head(feats), model(x))
    model.reset_classifier(0)
    assert model.num_classes == 0 and isinstance(model.get_classifier(), torch.nn.Identity)
    assert torch.allclose(model(x), pooled)
    backbone = create_model("resnet18", features_only=True, out_indices=(1, 2, 3, 4))
    assert backbone.feature_info.channels() == [64, 128, 256, 512]
    catalogued = create_model("resnet50.tv2_in1k", pretrained=False, num_classes=5)
    assert catalogued.spec.placement == "v1.5" and catalogued.num_classes == 5
    assert catalogued.pretrained_cfg["tag"] == "tv2_in1k"
    transform = get_weights("resnet50.tv2_in1k").transforms()
    assert transform(Image.new("RGB", (320, 240))).shape == (3, 224, 224)


def test_timm_keywords_reach_the_spec() -> None:
    m = resnetlab.create_model("resnet20", in_chans=1, drop_rate=0.3, drop_path_rate=0.1)
    assert m.spec.in_channels == 1 and m.conv1.in_channels == 1
    assert m.spec.dropout == 0.3 and m.spec.drop_path == 0.1
    pooled = resnetlab.create_model("resnet20", global_pool="max", num_classes=0)
    assert isinstance(pooled.avgpool, torch.nn.AdaptiveMaxPool2d)
    assert pooled(torch.randn(1, 3, 32, 32)).shape == (1, 64)
    with pytest.raises(InvalidValueError, match="give in_chans or in_channels, not both"):
        resnetlab.create_model("resnet20", in_chans=1, in_channels=1)
    with pytest.raises(InvalidValueError, match="global_pool must be 'avg' or 'max'"):
        resnetlab.create_model("resnet20", global_pool="avgmax")


def test_the_models_layer_says_where_published_weights_are() -> None:
    with pytest.raises(InvalidValueError, match=r"resnetlab.create_model\('resnet18', pretr"):
        resnetlab.models.create_model("resnet18", pretrained=True)
    with pytest.raises(InvalidValueError, match="is a catalogue name"):
        resnetlab.models.create_model("resnet18.tv_in1k")


def test_a_name_that_means_another_network_in_timm_says_which_to_use(offline: None) -> None:
    with pytest.raises(CheckpointError, match=r"resnet50 is resnetlab's resnet50_v1_5: "):
        resnetlab.create_model("resnet50", pretrained=True)
    with pytest.raises(CheckpointError, match="no published weights fit plain20"):
        resnetlab.create_model("plain20", pretrained=True)


def test_pretrained_offline_names_the_file_and_where_to_put_it(offline: None) -> None:
    with pytest.raises(CheckpointError, match=r"cannot download resnet18.tv_in1k .*put it at"):
        resnetlab.create_model("resnet18", pretrained=True)


@pytest.fixture
def akamaster_in_cache() -> Path:
    src = SHARED / "weights" / "resnet56-4bfd9763.th"
    if not src.is_file():
        pytest.skip(f"{src} not present (it lives in ../shared, beside the repository)")
    w = get_weights("resnet56.akamaster_cifar10")
    target, _ = cache_path(w.url, sha256=w.sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    return target


def test_pretrained_true_loads_a_published_file_put_in_the_cache(
    offline: None, akamaster_in_cache: Path
) -> None:
    model = resnetlab.create_model("resnet56", pretrained=True).eval()
    ref = resnetlab.interop.load_pretrained(akamaster_in_cache, "resnet56", layout="akamaster")[0]
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), ref.eval()(x))
    assert model.pretrained_cfg["name"] == "resnet56.akamaster_cifar10"
    # timm's fine-tuning conventions: a new head, and a grey first conv from the RGB one.
    grey = resnetlab.create_model(
        "resnet56.akamaster_cifar10", pretrained=True, num_classes=3, in_chans=1
    ).eval()
    assert grey.num_classes == 3 and grey.spec.in_channels == 1
    assert torch.allclose(grey.conv1.weight, ref.conv1.weight.sum(1, keepdim=True))
    g = torch.rand(1, 1, 32, 32)
    rgb = ref.forward_features(g.expand(1, 3, 32, 32))
    assert torch.allclose(grey.forward_features(g), rgb, atol=1e-4)


def test_the_weights_transform_is_predicts_preprocessing() -> None:
    t = get_weights("resnet50.tv2_in1k").transforms()
    assert (t.load_side, t.crop, t.interpolation) == (232, 224, "bilinear")
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (301, 403, 3), dtype=np.uint8))
    x = t(im)
    assert x.dtype == torch.float32 and x.shape == (3, 224, 224)
    # By hand: shorter side 301 → 232 (long side int(232·403/301) = 310), centre 232² then 224².
    small = im.resize((310, 232), Image.Resampling.BILINEAR)
    left = round((310 - 232) / 2)
    arr = np.asarray(small)[4:228, left + 4 : left + 228].astype(np.float32) / 255
    want = (arr - np.array(t.mean, np.float32)) / np.array(t.std, np.float32)
    assert torch.equal(x, torch.from_numpy(want.transpose(2, 0, 1).copy()))
    model = resnetlab.create_model("resnet50.tv2_in1k")
    assert transform_of(model) == t


def test_vgg_has_the_same_interface() -> None:
    model = resnetlab.create_model("vgg11", num_classes=4, in_chans=1, drop_rate=0.1).eval()
    assert model.num_classes == 4 and model.num_features == 4096
    assert model.pretrained_cfg["input_size"] == (1, 224, 224)
    x = torch.randn(1, 1, 32, 32)
    feats = model.forward_features(x)
    pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape == (1, 4096) and torch.allclose(model.forward_head(feats), model(x))
    model.reset_classifier(0)
    assert model.num_classes == 0 and torch.allclose(model(x), pooled)
