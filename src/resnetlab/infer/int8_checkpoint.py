"""``resnetlab quantize`` and ``resnetlab bench FILE.pt2``: a trained checkpoint quantized on
a fixed draw of its training images, written as an int8 file and measured against its fp32
model on the test split (:func:`quantize_checkpoint`, :class:`QuantizeReport`), and an int8
file's program timed (:func:`bench_quantized`).

The flow itself is :mod:`~resnetlab.infer.quantize`'s, the file :mod:`~resnetlab.infer.int8_file`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnetlab.errors import InvalidValueError, NoEngineError, first_line
from resnetlab.infer.int8_file import (
    QuantizedFileError,
    is_quantized_file,
    load_quantized,
    save_quantized,
)
from resnetlab.infer.quantize import (
    MAX_LAYER_ERROR,
    LayerError,
    QuantizedNet,
    Runner,
    kept_dtype,
    layer_sensitivity,
    quantize_program,
)


@dataclass
class QuantizeReport:
    """What ``resnetlab quantize`` measured: top-1 (%) of both models on ``split``, the
    share (%) of images whose top-1 class they agree on, and every layer's error."""

    output: Path
    split: str
    images: int
    calibration: int
    top1_fp32: float
    top1_int8: float
    agreement: float
    max_rel_error: float  # of the logits, int8 vs fp32, over the split
    layers: list[LayerError]
    compiled: bool

    def to_text(self) -> str:
        kept = [e.name for e in self.layers if e.dtype != "int8"]
        lines = [f"{'layer':<28} {'kind':<6} {'int8 rel err':>12}  runs in"]
        lines += [f"{e.name:<28} {e.kind:<6} {e.rel_error:>12.4f}  {e.dtype}" for e in self.layers]
        how = "compiled, oneDNN int8 kernels" if self.compiled else "reference path, not compiled"
        lines += [
            f"calibration: {self.calibration} training images; {len(kept)} of "
            f"{len(self.layers)} layers kept out of int8"
            + (
                f" ({', '.join(f'{e.name}: {e.dtype}' for e in self.layers if e.dtype != 'int8')})"
                if kept
                else ""
            ),
            f"{self.split} ({self.images:,} images): top-1 fp32 {self.top1_fp32:.2f}%, "
            f"int8 {self.top1_int8:.2f}% ({how}); top-1 agreement {self.agreement:.2f}%; "
            f"max logit rel err {self.max_rel_error:.3g}",
            f"wrote {self.output}",
        ]
        return "\n".join(lines)


def _logits(
    model: Callable[[Tensor], Tensor], batches: Iterator[tuple[Tensor, Tensor]]
) -> tuple[Tensor, Tensor]:
    outs, labels = [], []
    with torch.no_grad():
        for x, y in batches:
            outs.append(model(x).float())
            labels.append(y)
    return torch.cat(outs), torch.cat(labels)


def calibration_images(
    p: Any, data: str | None, *, count: int, seed: int = 0, batch_size: int = 250
) -> Tensor:
    """``count`` training images of ``p``'s (a :class:`~resnetlab.infer.predict.Predictor`)
    data, a fixed random draw, preprocessed as at test time: ``(count, C, H, W)`` fp32. The
    same draw calibrates every int8 engine measured against ``resnetlab quantize``."""
    from resnetlab.data.datasets import eval_split_batches

    train = p.split("train", data)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    sample = train.subset(pick[: min(count, len(train))])
    batches = eval_split_batches(
        sample, p.preprocess, batch_size=batch_size, device=torch.device("cpu")
    )
    return torch.cat([x for x, _ in batches])


def evaluation_split(p: Any, data: str | None) -> tuple[str, Any]:
    """The split int8 is measured on: test, or val where the data has no test split."""
    from resnetlab.data.tensors import DataError

    try:
        return "test", p.split("test", data)
    except DataError:
        return "val", p.split("val", data)


def quantize_checkpoint(
    ckpt: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    data: str | None = None,
    calibration: int = 512,
    max_layer_error: float = MAX_LAYER_ERROR,
    compile: bool = True,
    batch_size: int = 250,
    seed: int = 0,
) -> QuantizeReport:
    """Quantize a checkpoint's model on ``calibration`` training images (a fixed random
    draw), write the ``.pt2`` file and measure both models on the test split (val where
    the data has none)."""
    from resnetlab.fileio import check_writable
    from resnetlab.infer.predict import Predictor

    if is_quantized_file(ckpt):  # it would load (eval does), but its graph is int8 already
        raise QuantizedFileError(
            f"{ckpt} is an int8 program already; quantize the checkpoint it came from"
        )
    target = check_writable(out)
    p = Predictor.load(ckpt, device="cpu", onnx=False)
    cal = calibration_images(p, data, count=calibration, seed=seed, batch_size=batch_size)
    split, evaluated = evaluation_split(p, data)
    layers, program = _quantize_with_sensitivity(p.model, cal, max_layer_error)
    net = QuantizedNet(program, compile=compile)
    ref, q, labels = _both_logits(p, net, evaluated, batch_size)
    report = QuantizeReport(
        output=target,
        split=split,
        images=len(labels),
        calibration=len(cal),
        top1_fp32=100 * float((ref.argmax(1) == labels).float().mean()),
        top1_int8=100 * float((q.argmax(1) == labels).float().mean()),
        agreement=100 * float((ref.argmax(1) == q.argmax(1)).float().mean()),
        max_rel_error=float((q - ref).abs().max() / ref.abs().max()),
        layers=layers,
        compiled=compile,
    )
    save_quantized(program, target, _file_meta(p, ckpt, report))
    return report


def _quantize_with_sensitivity(
    model: nn.Module, cal: Tensor, max_layer_error: float
) -> tuple[list[LayerError], torch.export.ExportedProgram]:
    """The sensitivity pass on ``model`` (BN folded), then the program, with the layers it
    flagged kept out of int8 in the dtype it gave them."""
    from resnetlab.infer.folding import prepare

    layers = layer_sensitivity(
        prepare(model, channels_last=False),
        cal,
        max_layer_error=max_layer_error,
        keep=kept_dtype(),
    )
    program = quantize_program(
        model,
        cal,
        fp32_layers=[e.name for e in layers if e.dtype == "fp32"],
        bf16_layers=[e.name for e in layers if e.dtype == "bf16"],
    )
    return layers, program


def _both_logits(
    p: Any, net: QuantizedNet, evaluated: Any, batch_size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The fp32 model's logits, the int8 program's, and the labels, over ``evaluated``."""
    from resnetlab.data.datasets import eval_split_batches

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        return eval_split_batches(
            evaluated, p.preprocess, batch_size=batch_size, device=torch.device("cpu")
        )

    ref, labels = _logits(p.model.eval(), batches())
    q, _ = _logits(net, batches())
    return ref, q, labels


def _file_meta(p: Any, ckpt: str | os.PathLike[str], report: QuantizeReport) -> dict[str, Any]:
    """The int8 file's JSON entry: what rebuilds the predictor, and what was measured."""
    return {
        "model_name": p.config.model.name,
        "config": p.config.to_dict(),
        "classes": list(p.classes),
        "preprocess": asdict(p.preprocess),
        "data_size": list(p.data_size),
        "epoch": p.epoch,
        "source": str(ckpt),
        "calibration": report.calibration,
        "layers": [asdict(e) for e in report.layers],
        "measured": {
            k: getattr(report, k)
            for k in ("split", "images", "top1_fp32", "top1_int8", "agreement")
        },
    }


def bench_quantized(
    path: str | os.PathLike[str],
    example: Tensor,
    *,
    engines: Sequence[str] | None = None,
    min_seconds: float = 2.0,
) -> Any:
    """Time a ``.pt2`` file's program on ``example``: ``int8`` (compiled) and
    ``int8-reference`` (as saved), each checked against the reference path's outputs."""
    from resnetlab.infer.fast import EngineResult, FastModel, time_runner

    program, _ = load_quantized(path)
    reference = QuantizedNet(program)
    expected = reference(example)
    results: list[EngineResult] = []
    runners: dict[str, Runner] = {}
    skipped: dict[str, str] = {}
    for engine in dict.fromkeys(engines or ("int8", "int8-reference")):  # each timed once
        try:
            if engine not in ("int8", "int8-reference"):
                raise InvalidValueError(
                    f"a .pt2 file runs as int8 or int8-reference, not {engine!r}"
                )
            run = QuantizedNet(program, compile=True) if engine == "int8" else reference
            err = float((run(example) - expected).abs().max() / expected.abs().max())
            secs = time_runner(run, example, min_seconds=min_seconds)
        except Exception as exc:  # as in optimize_for_inference: skipped with its reason
            skipped[engine] = first_line(exc)[:120]
            continue
        runners[engine] = run
        results.append(EngineResult(engine, secs, example.shape[0], err))
    if not results:
        raise NoEngineError(f"no engine could run {path}: {skipped}")
    best = min(results, key=lambda r: r.seconds_per_batch)
    return FastModel(best.engine, runners[best.engine], results, skipped)
