"""Grad-CAM (Selvaraju et al. 2017) through captum's ``LayerGradCam``: which part of an
image made the model choose its class.

Grad-CAM weights the last stage's feature maps by the spatial mean of the class score's
gradient and keeps the positive part; we take it on the last residual stage (after the
closing BN-ReLU of a pre-activation net, whose stage output is not yet normalised; VGG's
last max-pool, as pytorch-grad-cam does), the coarsest and most class-specific maps: 7×7
for a 224 ImageNet input, 8×8 for a 32×32 CIFAR one. The map is upsampled bilinearly to
the model's input and drawn over the image the model saw (its centre crop), enlarged for
small images so that a 32×32 picture can be read.

Each picture :func:`figure` draws is two panels under a title: the original image as the
file holds it (with the box the model saw marked, where that was only a crop of it) and the
heatmap over the model's view, titled with the class and its probability. The heat's
opacity grows with the heat (at most :data:`MAX_ALPHA`), so the image shows through
everywhere and stays untouched where the model did not look. The title and the panels'
boxes are also in the PNG's text chunks (``Title``, ``Panels``), for tools and tests.

captum is an optional dependency (``pip install 'resnetlab[explain]'``); it is imported
only when an explanation is asked for.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from resnetlab.errors import MissingExtraError as MissingExtraError
from resnetlab.fileio import write_bytes_atomic
from resnetlab.models.resnet import ResNet
from resnetlab.models.vgg import VGG

MIN_SIDE = 256  # pixels: small images are drawn at least this large
MAX_SIDE = 448  # pixels: a panel's height at most (a photo need not be drawn full size)
MAX_ALPHA = 0.6  # the heat's opacity where it peaks; cold regions show the image as it is
TITLE_HEIGHT = 30  # pixels
GAP = 8  # pixels between the panels
BOX_COLOUR = (255, 215, 0)  # the crop box: gold, visible on most photos


def _layer_grad_cam() -> Any:
    try:
        from captum.attr import LayerGradCam
    except ImportError as err:
        raise MissingExtraError(
            "explanations need captum: pip install 'resnetlab[explain]' (or pip install captum)"
        ) from err
    return LayerGradCam


def require_captum() -> None:
    """Fail now, in one line, rather than after the predictions are printed."""
    _layer_grad_cam()


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM reads: the last stage's output (see the module docstring)."""
    if isinstance(model, ResNet):
        if model.final_relu is not None:
            return model.final_relu
        return model.stages()[-1]
    if isinstance(model, VGG):
        return model.features[-1]
    raise TypeError(f"no Grad-CAM layer known for {type(model).__name__}")


def grad_cam(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Heatmaps ``(N, H, W)`` in [0, 1] of class ``target[i]`` for input ``x[i]``
    (normalised, ``(N, C, H, W)``), at the input's size. An all-zero map means no location
    raised the class score."""
    from captum.attr import LayerAttribution

    cam = _layer_grad_cam()(model, cam_layer(model))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            attr = cam.attribute(
                x.float().requires_grad_(True), target=target.tolist(), relu_attributions=True
            )
    finally:
        model.train(was_training)
    up: Tensor = LayerAttribution.interpolate(attr.detach(), tuple(x.shape[-2:]), "bilinear")
    heat = up[:, 0].clamp(min=0)
    peak = heat.flatten(1).amax(dim=1).clamp(min=1e-12).view(-1, 1, 1)
    return (heat / peak).cpu()


def overlay(image: Tensor, heat: Tensor, *, alpha: float = MAX_ALPHA) -> Image.Image:
    """The image (uint8 ``(C, H, W)``, grey or RGB) with the heatmap (``(H, W)`` in [0, 1])
    drawn over it in the jet colour map, each pixel's opacity ``alpha`` × its heat (so the
    image shows through), enlarged to at least :data:`MIN_SIDE` pixels."""
    from matplotlib import colormaps

    rgb = image.float().div(255)
    rgb = rgb.expand(3, -1, -1) if rgb.shape[0] == 1 else rgb[:3]
    colour = torch.from_numpy(colormaps["jet"](heat.numpy())[..., :3]).permute(2, 0, 1)
    weight = alpha * heat.float().unsqueeze(0)
    mixed = (1 - weight) * rgb + weight * colour.float()
    pixels = (mixed.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    scale = max(1, -(-MIN_SIDE // min(picture.size)))
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.BICUBIC
        )
    return picture


def seen_box(
    size: tuple[int, int], crop_fraction: float
) -> tuple[float, float, float, float] | None:
    """The part ``(left, top, right, bottom)`` of a ``(width, height)`` image the model saw:
    its centre square (the shorter side), of which the centre ``crop_fraction``; ``None``
    when that is the whole image."""
    w, h = size
    side = min(w, h) * crop_fraction
    left, top = (w - side) / 2, (h - side) / 2
    if left < 0.5 and top < 0.5:
        return None
    return (left, top, left + side, top + side)


def figure(
    original: Image.Image, seen: Image.Image, title: str, box: tuple[float, ...] | None
) -> Image.Image:
    """The picture :func:`save_figure` writes (module docstring): the title over the
    original (``box`` drawn on it) beside ``seen`` (the heatmap overlay)."""
    from PIL import ImageDraw, ImageFont

    panel = min(MAX_SIDE, max(MIN_SIDE, seen.height))
    scale = panel / original.height
    left = original.convert("RGB").resize(
        (max(1, round(original.width * scale)), panel), Image.Resampling.BICUBIC
    )
    right = seen.resize((round(seen.width * panel / seen.height), panel), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (left.width + GAP + right.width, TITLE_HEIGHT + panel), "white")
    canvas.paste(left, (0, TITLE_HEIGHT))
    canvas.paste(right, (left.width + GAP, TITLE_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    if box is not None:
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        draw.rectangle(
            (x0, TITLE_HEIGHT + y0, x1 - 1, TITLE_HEIGHT + y1 - 1), outline=BOX_COLOUR, width=2
        )
    draw.text((6, 6), title, fill="black", font=ImageFont.load_default(size=16))
    canvas.info["panels"] = {
        "original": [0, TITLE_HEIGHT, left.width, TITLE_HEIGHT + panel],
        "overlay": [left.width + GAP, TITLE_HEIGHT, canvas.width, TITLE_HEIGHT + panel],
    }
    return canvas


def save_figure(picture: Image.Image, title: str, target: Path) -> Path:
    """Write the PNG atomically (never a half-written file), title and panels in its text."""
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("Title", title)
    meta.add_text("Panels", json.dumps(picture.info.get("panels", {})))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=meta)
    return write_bytes_atomic(target, buffer.getvalue())


def heatmap_paths(out_dir: str | os.PathLike[str], files: list[str]) -> list[Path]:
    """``DIR/<stem>.gradcam.png`` per image file; ``<stem>-<i>`` where stems repeat
    (``a/cat.jpg`` and ``b/cat.png``), so no heatmap overwrites another."""
    stems = [Path(f).stem or "image" for f in files]
    return [
        Path(out_dir) / f"{s}{f'-{i}' if stems.count(s) > 1 else ''}.gradcam.png"
        for i, s in enumerate(stems)
    ]
