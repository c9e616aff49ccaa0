"""Grad-CAM explanations (captum's LayerGradCam on the last stage): the heatmap of a model
that has learnt to key on a planted patch peaks on that patch; `predict --explain` writes
one PNG per image; without captum, one line saying what to install."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import cli, tiny_train
from resnetlab.cli import main
from resnetlab.data.augment import Preprocess, eval_transform
from resnetlab.infer.predict import Predictor
from resnetlab.models import create_model
from resnetlab.runtime.config import TrainConfig
from resnetlab.runtime.execution import choose

pytest.importorskip("captum")

SIDE, PATCH = 32, 6


def patch_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grey noise (0-89); class 1 has a white PATCH×PATCH square at a random place.
    Returns uint8 images ``(n, 1, SIDE, SIDE)``, labels and each square's top-left corner."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 90, (n, 1, SIDE, SIDE), generator=g).to(torch.uint8)
    y = torch.randint(0, 2, (n,), generator=g)
    corner = torch.randint(0, SIDE - PATCH + 1, (n, 2), generator=g)
    for i in range(n):
        if y[i]:
            r, c = corner[i].tolist()
            x[i, :, r : r + PATCH, c : c + PATCH] = 255
    return x, y, corner


def test_heatmap_peaks_on_the_planted_patch() -> None:
    """A tiny grayscale ResNet trained (120 Adam steps) to tell noise from noise with a
    white square: for every patched image it calls "patch", the heatmap's peak lies on the
    square (within 2 px: the last stage is 8×8, one cell per 4 px). A map that ignored the
    evidence would land there for ~10% of the images."""
    torch.manual_seed(0)
    model = create_model("resnet20", layers=(1, 1, 1), width=0.5, in_channels=1, num_classes=2)
    pre = Preprocess(mean=(0.25,), std=(0.25,), image_size=SIDE, augment="none")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(120):
        x, y, _ = patch_images(32, seed=step)
        loss = nn.functional.cross_entropy(model(eval_transform(x, pre)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    predictor = Predictor(
        model, pre, ("noise", "patch"), (1, SIDE, SIDE), TrainConfig(), choose("cpu", "fp32"), 0
    )
    x, y, corner = patch_images(24, seed=10_000)
    found = predictor.explain(x)
    checked = 0
    for e, label, (top, left) in zip(found, y.tolist(), corner.tolist(), strict=True):
        assert e.heatmap.shape == (SIDE, SIDE) and e.image.shape == (1, SIDE, SIDE)
        assert float(e.heatmap.min()) >= 0.0 and float(e.heatmap.max()) in (0.0, pytest.approx(1.0))
        if label != 1 or e.label != "patch":
            continue
        r, c = divmod(int(e.heatmap.argmax()), SIDE)
        assert top - 2 <= r < top + PATCH + 2 and left - 2 <= c < left + PATCH + 2, (
            r,
            c,
            top,
            left,
        )
        checked += 1
    assert checked >= 8  # the model learnt the task: most patched images are called so
    torch.testing.assert_close(found[0].image, x[0])  # what the model saw: the image itself


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explain")
    code = main(tiny_train("--iterations", "1", "--out", str(out), "--name", "tiny", per_class=1))
    assert code == 0
    return out / "tiny" / "last.pt"


def test_predict_explain_writes_a_png_per_image(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    """RGB, grayscale and a larger RGBA image into a CIFAR (32×32) model: each gets a PNG
    at least 256 px on a side (small images are enlarged), named after the image."""
    paths = []
    for name, mode, size in (
        ("cat", "RGB", (32, 32)),
        ("grey", "L", (32, 32)),
        ("big", "RGBA", (80, 60)),
    ):
        p = tmp_path / f"{name}.png"
        Image.new(mode, size, color=128 if mode == "L" else None).save(p)
        paths.append(str(p))
    out_dir = tmp_path / "cams"
    code, out, err = cli(capsys, "predict", str(checkpoint), *paths, "--explain", str(out_dir))
    assert code == 0, err
    assert out.count("Grad-CAM:") == 3
    for name in ("cat", "grey", "big"):
        with Image.open(out_dir / f"{name}.gradcam.png") as im:
            assert im.format == "PNG" and im.mode == "RGB" and min(im.size) >= 256


def test_predict_explain_without_captum_is_one_line(
    capsys: pytest.CaptureFixture[str],
    checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)  # `import captum` now fails
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    code, out, err = cli(
        capsys, "predict", str(checkpoint), str(image), "--explain", str(tmp_path / "cams")
    )
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "explanations need captum: pip install 'resnetlab[explain]'" in err
    assert not (tmp_path / "cams").exists()


def test_a_gradcam_picture_has_its_title_and_both_panels(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    """A wide 80×60 photo into a 32×32 model: the original beside the overlay, under the
    class and its probability, the centre square the model saw boxed on the original."""
    arr = np.zeros((60, 80, 3), np.uint8)
    arr[:, :40] = (200, 30, 30)  # left half red, right half blue
    arr[:, 40:] = (30, 30, 200)
    path = tmp_path / "wide.png"
    Image.fromarray(arr).save(path)
    out_dir = tmp_path / "cams"
    code, out, err = cli(capsys, "predict", str(checkpoint), str(path), "--explain", str(out_dir))
    assert code == 0, err
    with Image.open(out_dir / "wide.gradcam.png") as im:
        im.load()
        title, panels = im.text["Title"], json.loads(im.text["Panels"])
        pixels = np.asarray(im.convert("RGB")).astype(int)
    label, prob = title.rsplit(" ", 1)
    assert prob.endswith("%") and 0 < float(prob[:-1]) <= 100
    assert f"{label}" in out  # the class predict printed first
    x0, y0, x1, y1 = panels["original"]
    ox0, oy0, ox1, oy1 = panels["overlay"]
    assert y1 - y0 >= 256 and oy1 - oy0 == y1 - y0 and ox0 > x1  # side by side, same height
    assert (x1 - x0) / (y1 - y0) == pytest.approx(80 / 60, abs=0.02)  # the whole original
    assert (pixels[:y0] < 100).all(axis=2).any()  # the title is drawn (dark text on white)
    # The original panel shows the photo: red on its far left, blue on its far right.
    assert tuple(pixels[(y0 + y1) // 2, x0 + 2]) == pytest.approx((200, 30, 30), abs=12)
    assert tuple(pixels[(y0 + y1) // 2, x1 - 3]) == pytest.approx((30, 30, 200), abs=12)
    # The centre 60×60 square the model saw is boxed in gold on it.
    scale = (y1 - y0) / 60
    gold = (pixels[y0:y1, x0:x1] == (255, 215, 0)).all(axis=2)
    assert gold[:, round(10 * scale)].sum() > (y1 - y0) // 2
    assert not gold[:, : round(10 * scale) - 2].any()
    # The overlay panel is the model's view with heat on it, not a copy of the original.
    assert not np.array_equal(pixels[oy0:oy1, ox0 : ox0 + 20], pixels[y0:y1, x0 : x0 + 20])


def test_many_files_are_explained_a_few_at_a_time_with_the_same_results(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grad-CAM keeps activations and gradients, so files are explained EXPLAIN_PIECE at a
    time (memory does not grow with the file count): 5 files in pieces of 2 give each file
    the heatmap and probability of one batch of all 5, and every PNG is written."""
    from resnetlab.infer import predict as predict_module

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    predictor = Predictor.load(checkpoint, device="cpu")
    whole = predictor.explain(predictor.read_images(paths))
    monkeypatch.setattr(predict_module, "EXPLAIN_PIECE", 2)
    pieces = predictor.explain_files(paths, tmp_path / "cams")
    assert [target.name for target, _ in pieces] == [f"im{i}.gradcam.png" for i in range(5)]
    assert all(target.exists() for target, _ in pieces)
    for (_, e), w in zip(pieces, whole, strict=True):
        assert e.label == w.label
        assert e.probability == pytest.approx(w.probability, abs=1e-5)
        torch.testing.assert_close(e.heatmap, w.heatmap, atol=1e-5, rtol=1e-4)
