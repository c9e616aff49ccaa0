"""resnetlab's own exports read back: a ``.safetensors`` or ``.onnx`` file that
``resnetlab export`` wrote is a model ``eval`` and ``predict`` take like a checkpoint.

Both files carry what inference needs in their metadata (written by
:func:`~resnetlab.infer.export.export_safetensors` and
:func:`~resnetlab.infer.export.export_onnx_file`): the model name, the class names and the
evaluation preprocessing, and for safetensors the model options and the stored image size.
A safetensors file is rebuilt as the PyTorch model (everything works on it, Grad-CAM
included); an ONNX file runs in ONNX Runtime (the ``[onnx]`` extra), BN already folded, and
has no gradients to explain with. A ``.safetensors`` file without our metadata is a
published one (:mod:`resnetlab.interop.published`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnetlab.data.augment import Preprocess
from resnetlab.errors import InvalidValueError, MissingExtraError, first_line
from resnetlab.models.registry import create_model
from resnetlab.runtime.checkpoint import CheckpointError, eval_preprocess
from resnetlab.runtime.config import ConfigError, TrainConfig, config_from_dict
from resnetlab.runtime.trust import check_numbers

OWN_FORMAT = "resnetlab"


class ExportedFileError(CheckpointError):
    """A ``.safetensors`` or ``.onnx`` file that claims to be ours but cannot be read back."""


@dataclass(frozen=True)
class Exported:
    """What an exported file holds: the runnable model and how to feed it."""

    model: nn.Module
    model_name: str
    options: dict[str, Any]
    classes: tuple[str, ...]
    preprocess: Preprocess
    data_size: tuple[int, int, int]  # (C, H, W) images are stored at before the crop
    config: TrainConfig | None  # the training config, where the file carries it


_RUN_LENGTHS = ("epochs", "iterations", "time_limit_min", "budget_min")


def _config(text: str | None) -> TrainConfig | None:
    if not text:
        return None
    d = json.loads(text)
    run = d.get("run")
    # An export of a published file carries the stand-in config its predictor made: its
    # data settings (interpolation, sizes) matter, its run was never trained, so it has no
    # length. Give it one so it reads back (it exported, but did not read).
    published = d.get("recipe") == "published" and isinstance(run, dict)
    if published and not any(run.get(k) for k in _RUN_LENGTHS):
        run["epochs"] = 1
    return config_from_dict(d)


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise ExportedFileError(
            f"{path}: not a readable safetensors file ({first_line(err)})"
        ) from None


def is_own_export(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ``.safetensors`` file with resnetlab's metadata or an ``.onnx``
    file (ours or not: :func:`read_exported` says which)."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        return True
    if p.suffix.lower() != ".safetensors" or not p.is_file():
        return False
    try:
        return _safetensors_metadata(p).get("format") == OWN_FORMAT
    except ExportedFileError:
        return False  # the published-file reader gives its own one-line error


def read_exported(path: str | os.PathLike[str]) -> Exported:
    """The model and its preprocessing from a file ``resnetlab export`` wrote."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        return _read_onnx(p)
    return _read_safetensors(p)


def _read_safetensors(path: Path) -> Exported:
    from safetensors.torch import load_file

    meta = _safetensors_metadata(path)
    try:
        name = meta["model"]
        options = dict(json.loads(meta.get("model_options", "{}")))
        classes = tuple(str(c) for c in json.loads(meta["classes"]))
        pre = eval_preprocess(json.loads(meta["preprocess"]))
        c, h, w = (int(v) for v in json.loads(meta["data_size"]))
        cfg = _config(meta.get("config"))
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise ExportedFileError(f"{path}: its resnetlab metadata is incomplete ({err})") from None
    check_sizes(path, pre, classes, (c, h, w))
    try:
        model = create_model(name, **{**options, "num_classes": len(classes), "in_channels": c})
    except (InvalidValueError, TypeError) as err:
        raise ExportedFileError(f"{path}: names a model resnetlab cannot build ({err})") from None
    weights = load_file(str(path))
    misfit = _misfit(model.state_dict(), weights)
    if misfit:
        raise ExportedFileError(f"{path}: its weights do not fit {name} ({misfit})")
    model.load_state_dict(weights)
    return Exported(model.eval(), name, options, classes, pre, (c, h, w), cfg)


def check_sizes(
    path: str | os.PathLike[str],
    pre: Preprocess,
    classes: tuple[str, ...],
    data_size: tuple[int, int, int],
) -> None:
    """The sizes and numbers an export's or an int8 file's metadata carries, checked as a
    checkpoint's are (:func:`~resnetlab.runtime.trust.check_numbers`) before any image is
    made at them: an ``image_size`` of 30,000 made ``predict`` allocate 10.8 GB."""
    check_numbers(
        path,
        weights={},
        classes=classes,
        mean=pre.mean,
        std=pre.std,
        image_size=pre.image_size,
        data_size=data_size,
    )


def _misfit(want: dict[str, Tensor], got: dict[str, Tensor]) -> str:
    """What keeps ``got`` from loading as ``want``, in a few words ("" if nothing)."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    shapes = [k for k in want if k in got and want[k].shape != got[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors missing, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected, e.g. {extra[0]}")
    if shapes:
        k = shapes[0]
        parts.append(
            f"{len(shapes)} of another shape, e.g. {k}: {tuple(got[k].shape)} in the file, "
            f"{tuple(want[k].shape)} in the model"
        )
    return "; ".join(parts)


class OnnxModel(nn.Module):
    """An ONNX file run by ONNX Runtime's CPU provider, called like the PyTorch model
    (normalised float images in, logits out). Inference only: no gradients."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        self.input_name = str(session.get_inputs()[0].name)

    def forward(self, x: Tensor) -> Tensor:
        (out,) = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})
        return torch.from_numpy(out)


def _refuse_external_data(path: Path) -> None:
    """An ONNX model may keep tensors in other files it names ("external data"); a crafted one
    names ``../../secret`` to read any file into a tensor. Our exports keep their weights
    inside, so a model naming any such file is refused before ONNX Runtime opens it (newer
    ONNX Runtimes also refuse paths leaving the model's folder; older ones did not)."""
    try:
        import onnx
    except ImportError:
        return  # onnxruntime alone: its own check is all there is
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # not parseable: ONNX Runtime says why, below
        return
    graphs, tensors = [model.graph], []
    while graphs:
        graph = graphs.pop()
        tensors += [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
        for node in graph.node:
            for attr in node.attribute:
                tensors += [attr.t, *attr.tensors] if attr.HasField("t") else [*attr.tensors]
                graphs += [*([attr.g] if attr.HasField("g") else []), *attr.graphs]
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
        raise ExportedFileError(
            f"{path}: an ONNX model whose tensors live in other files (external data); "
            "resnetlab's exports hold their weights inside, and it reads no other file"
        )


def _read_onnx(path: Path) -> Exported:
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise MissingExtraError(
            f"{path}: an ONNX file runs in ONNX Runtime: pip install 'resnetlab[onnx]'"
        ) from err
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    _refuse_external_data(path)
    try:
        session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own exception types for a bad file
        raise ExportedFileError(
            f"{path}: not a readable ONNX model ({first_line(err)[:160]})"
        ) from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if "resnetlab.model" not in meta:
        raise ExportedFileError(
            f"{path}: an ONNX model without resnetlab's metadata (model name, classes, "
            "preprocessing); resnetlab reads the ONNX files its `export` writes"
        )
    try:
        classes = tuple(str(c) for c in json.loads(meta["resnetlab.classes"]))
        pre = eval_preprocess(json.loads(meta["resnetlab.preprocess"]))
        channels = int(session.get_inputs()[0].shape[1])
        side = pre.image_size
        stored = json.loads(meta.get("resnetlab.data_size", "null")) or (channels, side, side)
        c, h, w = (int(v) for v in stored)
        cfg = _config(meta.get("resnetlab.config"))
    except (KeyError, TypeError, ValueError, IndexError, ConfigError) as err:
        raise ExportedFileError(f"{path}: its resnetlab metadata is incomplete ({err})") from None
    check_sizes(path, pre, classes, (c, h, w))
    name = meta["resnetlab.model"]
    return Exported(OnnxModel(session), name, {}, classes, pre, (c, h, w), cfg)
