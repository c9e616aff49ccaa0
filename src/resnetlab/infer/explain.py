"""Grad-CAM (Selvaraju et al. 2017) through captum's ``LayerGradCam``: which part of an
image made the model choose its class.

Grad-CAM weights the last stage's feature maps by the spatial mean of the class score's
gradient and keeps the positive part; we take it on the last residual stage (after the
closing BN-ReLU of a pre-activation net, whose stage output is not yet normalised; VGG's
last max-pool, as pytorch-grad-cam does), the coarsest and most class-specific maps: 7×7
for a 224 ImageNet input, 8×8 for a 32×32 CIFAR one. The map is upsampled bilinearly to
the model's input and drawn over the image the model saw (its centre crop), enlarged for
small images so that a 32×32 picture can be read.

captum is an optional dependency (``pip install 'resnetlab[explain]'``); it is imported
only when an explanation is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from resnetlab.errors import MissingExtraError as MissingExtraError
from resnetlab.models.resnet import ResNet
from resnetlab.models.vgg import VGG

MIN_SIDE = 256  # pixels: small images are drawn at least this large


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


def overlay(image: Tensor, heat: Tensor, *, alpha: float = 0.5) -> Image.Image:
    """The image (uint8 ``(C, H, W)``, grey or RGB) with the heatmap (``(H, W)`` in [0, 1])
    drawn over it in the jet colour map, enlarged to at least :data:`MIN_SIDE` pixels."""
    from matplotlib import colormaps

    rgb = image.float().div(255)
    rgb = rgb.expand(3, -1, -1) if rgb.shape[0] == 1 else rgb[:3]
    colour = torch.from_numpy(colormaps["jet"](heat.numpy())[..., :3]).permute(2, 0, 1)
    mixed = (1 - alpha) * rgb + alpha * colour.float()
    pixels = (mixed.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    scale = max(1, -(-MIN_SIDE // min(picture.size)))
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.BICUBIC
        )
    return picture


def heatmap_paths(out_dir: str | os.PathLike[str], files: list[str]) -> list[Path]:
    """``DIR/<stem>.gradcam.png`` per image file; ``<stem>-<i>`` where stems repeat
    (``a/cat.jpg`` and ``b/cat.png``), so no heatmap overwrites another."""
    stems = [Path(f).stem or "image" for f in files]
    return [
        Path(out_dir) / f"{s}{f'-{i}' if stems.count(s) > 1 else ''}.gradcam.png"
        for i, s in enumerate(stems)
    ]
