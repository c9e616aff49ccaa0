"""Using a trained checkpoint: the model plus the exact preprocessing it was trained with.

>>> p = Predictor.load("runs/resnet20-fast/best.pt")        # doctest: +SKIP
>>> p.predict_files(["cat.jpg"], top_k=3)                    # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from resnetlab.analysis.memory_estimate import BatchFit
from resnetlab.data.augment import Preprocess, eval_transform
from resnetlab.data.datasets import eval_split_batches
from resnetlab.data.images import ImageError, decode_image, decode_square
from resnetlab.data.tensors import DataError, Split
from resnetlab.errors import InvalidValueError
from resnetlab.infer.exported import OnnxModel, check_sizes, is_own_export, read_exported
from resnetlab.infer.int8_file import QuantizedFileError, is_quantized_file, load_quantized
from resnetlab.interop.compat import Layout
from resnetlab.interop.fact_sheet import PublishedWeights, imagenet_classes
from resnetlab.interop.published import LoadedWeights, is_weights_name, load_published
from resnetlab.runtime.checkpoint import Checkpoint, NotTrainingCheckpointError, eval_preprocess
from resnetlab.runtime.config import DataConfig, ModelConfig, TrainConfig, config_from_dict
from resnetlab.runtime.evaluate import evaluate
from resnetlab.runtime.execution import Execution, choose
from resnetlab.runtime.metrics import ConfusionMatrix

EXPLAIN_PIECE = 16  # images explained at a time (Grad-CAM keeps activations and gradients)


@dataclass(frozen=True)
class Prediction:
    file: str
    top: list[tuple[str, float]]  # (class, probability), best first


@dataclass(frozen=True)
class Explanation:
    """Why the model chose ``label``: the Grad-CAM heatmap ``(H, W)`` in [0, 1] at the
    model's input size, and ``image``, uint8 ``(C, H, W)``, what the model saw (after
    the evaluation resize and centre crop)."""

    label: str
    probability: float
    heatmap: Tensor
    image: Tensor


def refuse_onnx(path: str | os.PathLike[str]) -> None:
    """One line for an ONNX file given to a command that needs the PyTorch model."""
    if str(path).lower().endswith(".onnx"):
        raise InvalidValueError(
            f"{path}: an ONNX file runs in ONNX Runtime only, and this command needs the "
            "PyTorch model: give the checkpoint or its exported .safetensors"
        )


@dataclass
class Predictor:
    model: nn.Module
    preprocess: Preprocess
    classes: tuple[str, ...]
    data_size: tuple[int, int, int]  # (C, H, W) images were stored at during training
    config: TrainConfig
    place: Execution
    epoch: int
    # A published file: its catalogue entry (None when unknown to the catalogue), and
    # whether the preprocessing is assumed rather than the publisher's.
    published: LoadedWeights | None = None

    @property
    def weights(self) -> PublishedWeights | None:
        return self.published.weights if self.published else None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str = "auto",
        precision: str = "fp32",
        model: str | None = None,
        layout: Layout | None = None,
        onnx: bool = True,
    ) -> Predictor:
        """Rebuild the model from a resnetlab checkpoint, from a file ``resnetlab export``
        wrote, or from a published file or catalogue name (see
        :func:`~resnetlab.interop.published.load_published`; ``model`` and ``layout`` are for
        files the catalogue does not know). Everything is read with ``weights_only=True``.
        ``onnx=False``: the caller needs the PyTorch model, which an ONNX file is not."""
        text = str(path)
        if not onnx:
            refuse_onnx(text)
        if is_quantized_file(text):
            return cls.from_quantized(text)
        if is_own_export(text):
            return cls.from_exported(text, device=device, precision=precision)
        if text.endswith(".safetensors") or is_weights_name(text):
            return cls.from_published(
                load_published(text, model=model, layout=layout), device=device, precision=precision
            )
        try:
            ckpt = Checkpoint.load(path)
        except NotTrainingCheckpointError:
            return cls.from_published(
                load_published(text, model=model, layout=layout), device=device, precision=precision
            )
        place = choose(device, precision)
        net = ckpt.load_model().to(place.device)
        return cls(
            net, ckpt.eval_preprocess, ckpt.classes, ckpt.data_size, ckpt.config, place, ckpt.epoch
        )

    @classmethod
    def from_exported(
        cls, path: str | os.PathLike[str], *, device: str = "auto", precision: str = "fp32"
    ) -> Predictor:
        """A file ``resnetlab export`` wrote (:mod:`resnetlab.infer.exported`): safetensors
        rebuilt as the PyTorch model; ONNX run by ONNX Runtime on the CPU in fp32."""
        e = read_exported(path)
        onnx = isinstance(e.model, OnnxModel)
        place = choose("cpu", "fp32") if onnx else choose(device, precision)
        cfg = e.config
        if cfg is None:  # written before exports carried the training config
            data = DataConfig(
                source="", image_size=e.preprocess.image_size, augment=e.preprocess.augment
            )
            model = ModelConfig(name=e.model_name, options=e.options)
            cfg = TrainConfig(recipe="exported", model=model, data=data)
        return cls(e.model.to(place.device), e.preprocess, e.classes, e.data_size, cfg, place, 0)

    @classmethod
    def from_quantized(cls, path: str | os.PathLike[str], *, compile: bool = False) -> Predictor:
        """A ``resnetlab quantize`` file (:mod:`resnetlab.infer.int8_checkpoint`): the int8 program,
        on the CPU in fp32 (its int8 kernels are x86 CPU ones), with the checkpoint's
        preprocessing and classes from its metadata. ``compile``: lower it to oneDNN's int8
        kernels on the first call of each batch shape."""
        from resnetlab.infer.quantize import QuantizedNet

        program, meta = load_quantized(path)
        try:
            cfg = config_from_dict(meta["config"])
            c, h, w = (int(v) for v in meta["data_size"])
            pre = eval_preprocess(meta["preprocess"])
            classes = tuple(str(v) for v in meta["classes"])
        except (KeyError, TypeError, ValueError) as err:
            raise QuantizedFileError(f"{path}: its metadata is incomplete ({err})") from err
        check_sizes(path, pre, classes, (c, h, w))  # before any image is made at them
        net = QuantizedNet(program, compile=compile)
        return cls(
            net, pre, classes, (c, h, w), cfg, choose("cpu", "fp32"), int(meta.get("epoch", 0))
        )

    @classmethod
    def from_published(
        cls, loaded: LoadedWeights, *, device: str = "auto", precision: str = "fp32"
    ) -> Predictor:
        """A predictor that applies the publisher's preprocessing: images are stored with
        their shorter side at the resize side (centre square) and centre-cropped to the
        input side, or used at their own size where the publisher did not resize."""
        pp = loaded.preprocessing
        side = pp.resize or pp.crop
        pre = Preprocess(
            mean=pp.mean,
            std=pp.std,
            image_size=pp.crop,
            augment="imagenet" if pp.resize else "none",
            crop_pct=pp.crop_pct,
        )
        w = loaded.weights
        data = DataConfig(
            source=w.eval_data[0] if w and w.eval_data else "",
            image_size=pp.crop,
            load_size=pp.resize,
            interpolation="bicubic" if pp.interpolation == "bicubic" else "bilinear",
            augment=pre.augment,
        )
        model = ModelConfig(name=loaded.model_name, options=dict(loaded.options))
        cfg = TrainConfig(recipe="published", model=model, data=data)
        place = choose(device, precision)
        loaded.model.to(place.device).eval()
        channels = int(getattr(getattr(loaded.model, "spec", None), "in_channels", 3))
        return cls(loaded.model, pre, loaded.classes, (channels, side, side), cfg, place, 0, loaded)

    @torch.no_grad()
    def probabilities(self, images: Tensor) -> Tensor:
        """uint8 ``(N, C, H, W)`` at the stored size → class probabilities ``(N, classes)``."""
        x = eval_transform(images.to(self.place.device), self.preprocess)
        logits: Tensor = self.model(x).float()
        return logits.softmax(dim=1).cpu()

    def read_images(self, paths: list[str]) -> Tensor:
        """Image files → uint8 ``(N, C, H, W)`` at the stored size, decoded as in training
        (a square size: the shorter side resized to it and the centre square cut, with the
        config's interpolation, so a photo keeps its proportions); an unreadable file raises
        ``ImageError``."""
        c, h, w = self.data_size
        filt = self.config.data.interpolation
        images = []
        for p in paths:
            try:
                data = Path(p).read_bytes()
            except OSError as err:
                raise ImageError(f"{p}: cannot read ({err.strerror or err})") from err
            if h == w:
                images.append(decode_square(data, p, h, interpolation=filt, channels=c))
            else:
                images.append(decode_image(data, p, size=(h, w), channels=c, interpolation=filt))
        return torch.stack(images)

    def predict_files(
        self, paths: list[str], *, top_k: int = 5, fit: BatchFit | None = None
    ) -> list[Prediction]:
        """Top-k classes of each image file; an unreadable file raises ``ImageError``. The
        files are decoded and run in batches that fit (``fit``, else :meth:`fit_batch` of
        them all): 6,000 photos in one batch were killed by the kernel."""
        n = (fit or self.fit_batch(len(paths))).batch
        chunks = [paths[i : i + n] for i in range(0, len(paths), n)]
        probs = torch.cat([self.probabilities(self.read_images(c)) for c in chunks])
        k = max(1, min(top_k, len(self.classes)))
        values, index = probs.topk(k, dim=1)
        return [
            Prediction(p, [(self.classes[int(i)], float(v)) for v, i in zip(vs, ix, strict=True)])
            for p, vs, ix in zip(paths, values, index, strict=True)
        ]

    def explain(self, images: Tensor) -> list[Explanation]:
        """Grad-CAM of the top class of each uint8 image ``(N, C, H, W)`` at the stored
        size (see :mod:`resnetlab.infer.explain`; needs captum)."""
        from resnetlab.infer.explain import grad_cam

        if isinstance(self.model, OnnxModel):
            raise InvalidValueError(
                "--explain needs the PyTorch model's gradients, which an ONNX file does not "
                "have: give the checkpoint or the exported .safetensors instead"
            )

        x = eval_transform(images.to(self.place.device), self.preprocess)
        with torch.no_grad():
            probs = self.model(x).float().softmax(dim=1).cpu()
        top, label = probs.max(dim=1)
        heat = grad_cam(self.model, x, label.to(x.device))
        mean = torch.tensor(self.preprocess.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.preprocess.std, device=x.device).view(1, -1, 1, 1)
        seen = ((x * std + mean) * 255).round().clamp(0, 255).byte().cpu()  # the model's view
        return [
            Explanation(self.classes[int(k)], float(p), h, v)
            for k, p, h, v in zip(label, top, heat, seen, strict=True)
        ]

    def explain_files(
        self, paths: list[str], out_dir: str | os.PathLike[str]
    ) -> list[tuple[Path, Explanation]]:
        """Write ``DIR/<stem>.gradcam.png`` per image file: the original (the part the model
        saw boxed) beside the top class's Grad-CAM over the model's view, titled with the
        class and its probability (:func:`~resnetlab.infer.explain.figure`); returns each
        PNG with its explanation. Every target is checked before any work."""
        from resnetlab.fileio import check_writable
        from resnetlab.infer.explain import figure, heatmap_paths, overlay, save_figure, seen_box

        targets = heatmap_paths(out_dir, paths)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for target in targets:  # before the work: a FIFO, a 256-byte name, …
            check_writable(target)
        _, h, w = self.data_size
        pre = self.preprocess
        inner = pre.image_size / h if pre.augment == "imagenet" and h != pre.image_size else 1.0
        found: list[Explanation] = []
        # Grad-CAM keeps every activation and its gradient: a few images at a time, so that
        # memory does not grow with the number of files (eval mode: each image on its own).
        for start in range(0, len(paths), EXPLAIN_PIECE):
            piece = paths[start : start + EXPLAIN_PIECE]
            explained = self.explain(self.read_images(piece))
            found += explained
            here = targets[start : start + EXPLAIN_PIECE]
            for path, target, e in zip(piece, here, explained, strict=True):
                with Image.open(path) as im:
                    original = im.convert("RGB")
                box = seen_box(original.size, inner) if h == w else None
                title = f"{e.label} {e.probability:.1%}"
                picture = figure(original, overlay(e.image, e.heatmap), title, box)
                save_figure(picture, title, target)
        return list(zip(targets, found, strict=True))

    def split(self, split: str, source: str | None = None) -> Split:
        """A split of the training data (the same val split as in training), or of ``source``."""
        return self._pick(split, source)[1]

    def default_split(self, source: str | None = None) -> tuple[str, Split]:
        """``eval`` without ``--split``: the data's test split, else its val split (a
        train/val folder, the PyTorch transfer-learning tutorial's layout); with its name."""
        return self._pick(None, source)

    def _pick(self, split: str | None, source: str | None) -> tuple[str, Split]:
        from resnetlab.runtime.configured_data import load_run_data

        d = self.config.data
        if not (source or d.source):
            raise DataError(
                "give --data: this file (published weights, or an export without its training "
                "config) does not say which data to evaluate on"
            )
        # The training run's data settings (so val is the same images), but the whole of
        # each split, nothing downloaded, and optionally another source with the same classes.
        data_cfg = replace(d, source=source or d.source, download=False, limit_per_class=None)
        bundle = load_run_data(replace(self.config, data=data_cfg), say=False)
        splits = {"train": bundle.train, "val": bundle.val, "test": bundle.test}
        if split is None:
            split = "test" if bundle.test is not None else "val"
            if bundle.val is None and bundle.test is None:
                raise DataError(
                    f"{source or d.source} has neither a test nor a val split; give --split train"
                )
        data = splits.get(split)
        if data is None:
            others = [k for k in ("test", "val", "train") if splits[k] is not None and k != split]
            raise DataError(
                f"{source or d.source} has no {split!r} split; it has "
                f"{', '.join(others) or 'none'} (--split {others[0] if others else 'train'})"
            )
        if self._unnamed_classes() and len(data.classes) == len(self.classes):
            # The file numbers its classes only (torchvision's ImageNet weights): a folder
            # of ImageNet's synset ids, sorted, is in the same order, so take its names.
            self.classes = tuple(data.classes)
        if tuple(data.classes) != self.classes:
            raise DataError(
                f"the data's classes {list(data.classes)[:4]}… differ from the "
                f"checkpoint's {list(self.classes)[:4]}…"
            )
        if data.image_size != self.data_size:
            raise DataError(
                f"the data's images are {data.image_size}, the model was trained on "
                f"{self.data_size}"
            )
        return split, data

    def _unnamed_classes(self) -> bool:
        # Or named after ImageNet-1k's list: a folder of synset ids is that list, in order.
        return self.published is not None and (
            self.classes[:1] == ("class 0",) or self.classes == imagenet_classes()
        )

    def evaluate(
        self, data: Split, *, batch_size: int = 500, fit: BatchFit | None = None
    ) -> tuple[dict[str, float], ConfusionMatrix]:
        """Metrics with the run's test-time views (``run.tta``), as in its final test, in
        batches of ``batch_size`` or fewer where that does not fit (``fit``, else
        :meth:`fit_batch`)."""
        cm = ConfusionMatrix(len(self.classes))
        batch = (fit or self.fit_batch(max(1, min(batch_size, len(data))))).batch
        metrics = evaluate(
            self.model,
            eval_split_batches(data, self.preprocess, batch_size=batch, device=self.place.device),
            place=self.place,
            confusion=cm,
            tta=self.config.run.tta,
        )
        return metrics, cm

    def fit_batch(self, batch: int) -> BatchFit:
        """The batch an inference over ``batch`` images runs in: no more than fits in the
        memory this process may still take and than an int8 program takes, with a note
        saying why when smaller (:func:`resnetlab.infer.batching.fit_batch`)."""
        from resnetlab.infer.batching import fit_batch

        return fit_batch(self, batch)
