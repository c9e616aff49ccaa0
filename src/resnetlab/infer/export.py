"""``resnetlab export``: a checkpoint (ours or a published one) written as ONNX, safetensors
or OpenVINO IR, each carrying the model name, classes and preprocessing, so that
:mod:`resnetlab.infer.exported` (and ``eval``/``predict``) can read the first two back.

Every export carries one portable ``preprocessing`` block (the same JSON under the same key
in ONNX metadata, safetensors metadata and OpenVINO ``rt_info``): versioned, evaluation
only, exactly what ``predict`` does to an image file (:mod:`resnetlab.interop.transforms`,
docs/interop.md "The preprocessing block"). The ``resnetlab.*`` keys beside it (training
preprocessing, the config) are resnetlab's own, for rebuilding and resuming."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from resnetlab.data.augment import Preprocess
from resnetlab.errors import InvalidValueError
from resnetlab.infer.predict import Predictor, refuse_onnx
from resnetlab.interop.compat import Layout
from resnetlab.interop.transforms import EvalTransform
from resnetlab.runtime.checkpoint import Checkpoint, NotTrainingCheckpointError
from resnetlab.runtime.config import plain

EXPORT_SUFFIXES = {".onnx": "onnx", ".safetensors": "safetensors", ".xml": "openvino"}


def export_format(out: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The export format of ``out``: ``fmt`` if given, else its suffix's. A ``fmt`` that
    another known suffix contradicts is refused (``--format onnx -o x.safetensors`` wrote
    ONNX bytes under a name every reader takes for safetensors)."""
    suffix = Path(out).suffix.lower()
    implied = EXPORT_SUFFIXES.get(suffix)
    if fmt is None:
        if implied is None:
            raise InvalidValueError(
                "give --format onnx|safetensors|openvino or a .onnx / .safetensors / .xml file name"
            )
        return implied
    if implied is not None and implied != fmt:
        want = next(k for k, v in EXPORT_SUFFIXES.items() if v == fmt)
        raise InvalidValueError(
            f"--format {fmt} but {out} ends in {suffix}, the suffix of {implied}; name the "
            f"file {want} (or drop --format)"
        )
    return fmt


# The key of the portable block, the same in every format.
PREPROCESSING_KEY = "preprocessing"


def preprocessing_block(
    pre: Preprocess,
    data_size: tuple[int, ...],
    interpolation: str,
    classes: tuple[str, ...] | list[str],
) -> dict[str, object]:
    """The portable block of a model: ``predict``'s evaluation steps as data. ``exact`` is
    false (with a ``note``) where ``predict`` resizes in float with torch, which PIL and
    numpy cannot repeat bit for bit: an input side other than the stored side without an
    ImageNet-style crop (the finetune recipe's 32 → 128), or a stored side other than the
    crop's resize side."""
    c, h, w = data_size
    crop = pre.image_size if pre.augment == "imagenet" and h != pre.image_size else h
    block = EvalTransform(
        load_side=h, crop=crop, interpolation=interpolation, mean=pre.mean, std=pre.std, channels=c
    ).block(classes)
    # predict resizes in float (torch) where the stored side is not the crop's resize side
    crop_path = pre.augment == "imagenet" and h != pre.image_size
    exact = h == w and crop == pre.image_size and (not crop_path or h == pre.resize_side)
    block["exact"] = exact
    if not exact:
        block["note"] = (
            f"predict also resizes in float with torch (bilinear, antialiased) to the "
            f"{pre.image_size}×{pre.image_size} input, which PIL cannot repeat bit for bit "
            "(resnetlab.data.augment.eval_transform)"
        )
    return block


@dataclass(frozen=True)
class _Graph:
    """What the graph exports (ONNX, OpenVINO) share: the model as loaded for export, BN
    folded, an example input at the model's input size, and the metadata that lets
    :mod:`resnetlab.infer.exported` and a reader rebuild the preprocessing (JSON strings)."""

    net: nn.Module
    example: Tensor
    meta: dict[str, str]


def _graph_source(
    ckpt: str | os.PathLike[str], *, model: str | None, layout: Layout | None
) -> _Graph:
    import json

    from resnetlab.infer.folding import fold_batchnorm

    p = Predictor.load(ckpt, device="cpu", model=model, layout=layout, onnx=False)
    c, side = p.data_size[0], p.preprocess.image_size
    block = preprocessing_block(p.preprocess, p.data_size, p.config.data.interpolation, p.classes)
    meta = {
        PREPROCESSING_KEY: json.dumps(block),
        "model": p.config.model.name,
        "classes": json.dumps(p.classes),
        "preprocess": json.dumps(asdict(p.preprocess)),
        "data_size": json.dumps(list(p.data_size)),
        "config": json.dumps(plain(p.config.to_dict())),
    }
    return _Graph(fold_batchnorm(p.model), torch.zeros(1, c, side, side), meta)


def export_onnx_file(
    ckpt: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | None = None,
    layout: Layout | None = None,
) -> Path:
    """The checkpoint's model, BN folded, as ONNX with a dynamic batch; the input is the
    normalised image batch at the model's input size (the preprocessing, classes and model
    name are in the file's metadata, each key prefixed ``resnetlab.``)."""
    from resnetlab.fileio import check_writable, refuse_same_file
    from resnetlab.infer.engines import export_onnx

    target = check_writable(out)
    refuse_same_file(target, ckpt)
    g = _graph_source(ckpt, model=model, layout=layout)
    meta = {
        key if key == PREPROCESSING_KEY else f"resnetlab.{key}": value
        for key, value in g.meta.items()
    }
    export_onnx(g.net, g.example, str(target), metadata=meta)
    return target


def export_openvino_file(
    ckpt: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | None = None,
    layout: Layout | None = None,
) -> Path:
    """The checkpoint's model, BN folded, as OpenVINO IR: ``out`` (``.xml``, the graph) and
    the ``.bin`` of its weights beside it, with the model name, classes and preprocessing in
    the IR's ``rt_info`` under ``resnetlab``. The batch is dynamic."""
    from resnetlab.fileio import atomic_pair, check_writable, refuse_same_file
    from resnetlab.infer.engines import _openvino, openvino_model

    ov = _openvino()
    target = check_writable(out)
    weights = check_writable(target.with_suffix(".bin"))
    refuse_same_file(target, ckpt)
    refuse_same_file(weights, ckpt)
    g = _graph_source(ckpt, model=model, layout=layout)
    converted = openvino_model(g.net, g.example)
    converted.reshape({0: ov.PartialShape([-1, *g.example.shape[1:]])})
    for key, value in g.meta.items():
        converted.set_rt_info(value, [key] if key == PREPROCESSING_KEY else ["resnetlab", key])
    # Both files into a temporary folder, then .bin and .xml renamed over the old pair
    # (in place, a full disk left a 0-byte .xml and half a .bin): see fileio.atomic_pair.
    with atomic_pair(weights, target) as folder:
        ov.save_model(converted, str(folder / target.name), compress_to_fp16=False)
    return target


def export_safetensors(
    ckpt: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | None = None,
    layout: Layout | None = None,
) -> Path:
    """Write the checkpoint's weights as safetensors, with the model name, class names and
    preprocessing in the file's metadata (JSON strings)."""
    import json

    from safetensors.torch import save_file

    from resnetlab.fileio import atomic_path, check_writable, refuse_same_file, set_new_file_mode

    target = check_writable(out)
    refuse_same_file(target, ckpt)
    refuse_onnx(ckpt)
    try:
        c = Checkpoint.load(ckpt)
    except NotTrainingCheckpointError:  # a published file: what the predictor made of it
        p = Predictor.load(ckpt, device="cpu", model=model, layout=layout, onnx=False)
        c = Checkpoint(
            model=p.model.state_dict(),
            config=p.config,
            classes=p.classes,
            preprocess=p.preprocess,
            data_size=p.data_size,
            model_name=p.config.model.name,
        )
    tensors = {k: v.contiguous() for k, v in c.model.items()}
    block = preprocessing_block(c.preprocess, c.data_size, c.config.data.interpolation, c.classes)
    meta = {
        PREPROCESSING_KEY: json.dumps(block),
        "format": "resnetlab",
        "model": c.model_name,
        "model_options": json.dumps(plain(c.config.model.options)),
        "classes": json.dumps(list(c.classes)),
        "preprocess": json.dumps(plain(asdict(c.preprocess))),
        "data_size": json.dumps(list(c.data_size)),
        "config": json.dumps(plain(c.config.to_dict())),
    }
    # save_file writes to a path (and recreates it 0600): the temporary one, whose mode
    # atomic_path sets back to a new file's.
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        set_new_file_mode(tmp)
    return target
