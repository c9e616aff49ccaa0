"""Portable exports: docs/interop.md's PIL + numpy + onnxruntime script, run exactly as the
docs show it (importing nothing from resnetlab), gives ``predict``'s probabilities to 1e-5
on real photos; every export carries the same versioned preprocessing block."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, SHARED
from resnetlab.infer.export import export_onnx_file, export_safetensors
from resnetlab.infer.predict import Predictor
from resnetlab.interop.transforms import PREPROCESSING_VERSION, EvalTransform
from resnetlab.models import create_model
from test_photos import PHOTOS, _photo

pytestmark = pytest.mark.usefixtures("one_thread")

TRAINING_KEYS = ("padding", "scale", "mixup_alpha", "cutmix_alpha", "random_erasing", "policy")


def reference_script(tmp_path: Path) -> Path:
    """The script under docs/interop.md's ``<!-- reference-script -->`` marker, verbatim."""
    text = (REPO / "docs" / "interop.md").read_text()
    found = re.search(r"<!-- reference-script -->\n```python\n(.*?)```", text, re.S)
    assert found, "docs/interop.md lost its reference script"
    path = tmp_path / "predict_onnx.py"
    path.write_text(found.group(1))
    return path


def run_script(script: Path, model: Path, images: list[Path]) -> dict[str, list[float]]:
    # resnetlab made unimportable: the script must stand on PIL, numpy and onnxruntime.
    guard = "import sys, runpy; sys.modules['resnetlab'] = None; runpy.run_path(sys.argv.pop(1))"
    out = subprocess.run(
        [sys.executable, "-c", guard, str(script), str(model), *map(str, images)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    found: dict[str, list[float]] = {}
    for line in out.stdout.splitlines():
        found.update(json.loads(line))
    return found


def compare(tmp_path: Path, source: Path, images: list[Path], **load: str) -> np.ndarray:
    onnx_file = export_onnx_file(source, tmp_path / "model.onnx", **load)
    p = Predictor.load(source, device="cpu", **load)
    want = p.probabilities(p.read_images([str(i) for i in images])).numpy()
    got = run_script(reference_script(tmp_path), onnx_file, images)
    diff = np.abs(np.array([got[str(i)] for i in images]) - want)
    assert diff.max() < 1e-5, diff.max()
    return want


def test_the_docs_script_matches_predict_through_resize_and_crop(tmp_path: Path) -> None:
    """A torchvision-layout ResNet-18 (256 → 224, bilinear) on photos of every size and mode
    a phone, a scanner or the web give (odd margins, grey, alpha, palette, 16-bit)."""
    model = create_model("resnet18", num_classes=5).eval()
    with torch.no_grad():  # BN statistics that are not the identity, as a trained net has
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    source = tmp_path / "r18.pth"
    torch.save(model.state_dict(), source)
    images = []
    for i, (size, mode, suffix) in enumerate(PHOTOS):
        images.append(tmp_path / f"photo{i}{suffix}")
        _photo(images[-1], size, mode, seed=i)
    probs = compare(tmp_path, source, images, model="resnet18")
    assert probs.shape == (len(PHOTOS), 5)


def test_the_docs_script_matches_predict_on_real_cifar_photos(tmp_path: Path) -> None:
    """akamaster's published ResNet-56 on twenty real CIFAR-10 test JPEGs."""
    weights = SHARED / "weights" / "resnet56-4bfd9763.th"
    archive = SHARED / "data" / "cifar10-jpeg.tar.gz"
    if not (weights.is_file() and archive.is_file()):
        pytest.skip("../shared weights or data not present")
    images = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if "/test/" in member.name and member.name.endswith(".jpg"):
                data = tar.extractfile(member)
                assert data is not None
                images.append(tmp_path / f"{len(images)}.jpg")
                images[-1].write_bytes(data.read())
                if len(images) == 20:
                    break
    probs = compare(tmp_path, weights, images)
    assert probs.shape == (20, 10)


def test_every_export_carries_the_same_block_without_training_keys(tmp_path: Path) -> None:
    from safetensors import safe_open

    model = create_model("resnet20", num_classes=3)
    source = tmp_path / "r20.pth"
    torch.save({"state_dict": model.state_dict()}, source)
    torch.save(model.state_dict(), source)
    onnx_file = export_onnx_file(source, tmp_path / "m.onnx", model="resnet20")
    st_file = export_safetensors(source, tmp_path / "m.safetensors", model="resnet20")
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    with safe_open(str(st_file), "pt") as f:
        st_meta = f.metadata()
    block = json.loads(props["preprocessing"])
    assert json.loads(st_meta["preprocessing"]) == block
    assert block["version"] == PREPROCESSING_VERSION and block["exact"] is True
    assert block["classes"] == ["class 0", "class 1", "class 2"]
    assert block["resize"] == {"side": "shorter", "size": 32, "long_side": "truncate"}
    assert not any(k in block for k in TRAINING_KEYS)
    # The block is the transform predict applies, as a callable on a PIL image.
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), np.uint8))
    path = tmp_path / "im.png"
    im.save(path)
    p = Predictor.load(source, device="cpu", model="resnet20")
    from resnetlab.data.augment import eval_transform

    want = eval_transform(p.read_images([str(path)]), p.preprocess)[0]
    assert torch.equal(EvalTransform.from_block(block)(Image.open(path)), want)


def test_an_export_without_the_block_is_still_read(tmp_path: Path) -> None:
    """Files exported before the block existed: ``predict`` reads them as before."""
    import onnx

    model = create_model("resnet20", num_classes=3)
    source = tmp_path / "r20.pth"
    torch.save(model.state_dict(), source)
    new = export_onnx_file(source, tmp_path / "new.onnx", model="resnet20")
    proto = onnx.load(str(new))
    kept = [p for p in proto.metadata_props if p.key != "preprocessing"]
    assert len(kept) == len(proto.metadata_props) - 1
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    image = tmp_path / "im.png"
    Image.new("RGB", (32, 32), (10, 200, 30)).save(image)
    a, b = (Predictor.load(f, device="cpu") for f in (new, old))
    x = a.read_images([str(image)])
    assert torch.equal(a.probabilities(x), b.probabilities(x))


def test_a_float_resize_is_marked_inexact() -> None:
    from resnetlab.data.augment import Preprocess
    from resnetlab.infer.export import preprocessing_block

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    upsized = preprocessing_block(Preprocess(mean, std, 128), (3, 32, 32), "bilinear", ())
    assert upsized["exact"] is False and "128×128" in str(upsized["note"])
    photos = Preprocess(mean, std, 96, augment="imagenet")  # stored at 110 = 96 / 0.875
    assert preprocessing_block(photos, (3, 110, 110), "bicubic", ())["exact"] is True
    assert preprocessing_block(photos, (3, 120, 120), "bicubic", ())["exact"] is False


def test_the_openvino_ir_carries_the_same_block(tmp_path: Path) -> None:
    """The ``.xml`` of an OpenVINO IR holds the block under ``rt_info/preprocessing``,
    equal to the safetensors (hence the ONNX) block: read by OpenVINO and, for a reader
    without it, straight from the XML text."""
    ov = pytest.importorskip("openvino", reason="openvino is not installed")
    import xml.etree.ElementTree as ET

    from safetensors import safe_open

    from resnetlab.infer.export import export_openvino_file

    model = create_model("resnet20", num_classes=3)
    source = tmp_path / "r20.pth"
    torch.save(model.state_dict(), source)
    xml = export_openvino_file(source, tmp_path / "m.xml", model="resnet20")
    st_file = export_safetensors(source, tmp_path / "m.safetensors", model="resnet20")
    with safe_open(str(st_file), "pt") as f:
        want = json.loads(f.metadata()["preprocessing"])
    ir = ov.Core().read_model(str(xml))
    block = json.loads(ir.get_rt_info(["preprocessing"]).astype(str))
    assert block == want
    assert block["version"] == PREPROCESSING_VERSION and block["exact"] is True
    assert block["classes"] == ["class 0", "class 1", "class 2"]
    assert not any(k in block for k in TRAINING_KEYS)
    # The training keys and the config are kept apart, under rt_info/resnetlab.
    assert ir.get_rt_info(["resnetlab", "model"]).astype(str) == "resnet20"
    element = ET.parse(xml).getroot().find("rt_info/preprocessing")
    assert element is not None and json.loads(element.attrib["value"]) == want


def test_the_block_transform_decodes_every_mode_as_predict_does(tmp_path: Path) -> None:
    """A weights entry's transform (``EvalTransform``) and ``predict`` share one conversion
    and one resize-and-crop (``resnetlab.data.images``): photos of every mode, 16-bit grey
    included (the transform once stretched it by its own min-max, predict by the bit
    depth), give the same tensor to the bit."""
    from safetensors import safe_open

    from resnetlab.data import images
    from resnetlab.data.augment import eval_transform
    from resnetlab.interop import transforms

    assert transforms.centre_square is images.centre_square
    assert transforms.to_rgb is images.to_rgb
    model = create_model("resnet20", num_classes=2)
    source = tmp_path / "r20.pth"
    torch.save(model.state_dict(), source)
    st_file = export_safetensors(source, tmp_path / "m.safetensors", model="resnet20")
    with safe_open(str(st_file), "pt") as f:
        block = json.loads(f.metadata()["preprocessing"])
    assert "bit depth" in block["convert"]
    t = EvalTransform.from_block(block)
    p = Predictor.load(source, device="cpu", model="resnet20")
    paths = []
    for i, (size, mode, suffix) in enumerate(PHOTOS):
        paths.append(tmp_path / f"photo{i}{suffix}")
        _photo(paths[-1], size, mode, seed=i)
    # A dark 16-bit scan (values 1,000-9,000 of 65,535): a min-max stretch makes it bright.
    dark = np.random.default_rng(7).integers(1000, 9000, (45, 70), dtype=np.uint16)
    paths.append(tmp_path / "dark16.png")
    Image.fromarray(dark).save(paths[-1])
    for path in paths:
        want = eval_transform(p.read_images([str(path)]), p.preprocess)[0]
        assert torch.equal(t(Image.open(path)), want), path.name
