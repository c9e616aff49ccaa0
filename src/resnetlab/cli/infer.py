"""``eval``, ``predict``, ``export``, ``quantize`` and ``bench``: a trained or published
model put to use (see :mod:`resnetlab.infer`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnetlab.cli.common import UsageError, add_published_options, positive_int, say_published
from resnetlab.fileio import check_folder, check_writable, json_text, write_text_atomic

if TYPE_CHECKING:  # the CLI imports the heavy modules only for the command that runs
    from resnetlab.data.tensors import Split
    from resnetlab.infer.predict import Predictor


def add_parsers(sub: Any) -> None:
    _add_eval(sub)
    _add_predict(sub)
    _add_export(sub)
    _add_quantize(sub)
    _add_bench(sub)


def _add_eval(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a split",
        description="Top-1/top-5, per-class accuracy and the confusion matrix "
        "(text and PNG) of a checkpoint on a split of its data or of --data.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CKPT")
    p.add_argument("--data", help="dataset (default: the one it was trained on)")
    p.add_argument(
        "--split",
        choices=("test", "val", "train"),
        default=None,
        help="default: the data's test split, else its val split (said when used: val "
        "chose the checkpoint, so its accuracy is optimistic)",
    )
    p.add_argument(
        "--out", type=Path, help="folder for eval-<split>.json and confusion-<split>.png"
    )
    p.add_argument("--batch-size", type=positive_int, default=500)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--no-compile",
        action="store_true",
        help="an int8 .pt2 file: run its reference path, not oneDNN's int8 kernels",
    )
    add_published_options(p)
    p.set_defaults(func=cmd_eval)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files",
        description="Top-k classes with probabilities for each image, using the "
        "preprocessing stored in the checkpoint.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CKPT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--explain",
        type=Path,
        metavar="DIR",
        help="write DIR/<image>.gradcam.png: the top class's Grad-CAM over each image "
        "(needs captum: pip install 'resnetlab[explain]')",
    )
    add_published_options(p)
    p.set_defaults(func=cmd_predict)


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint (ONNX, safetensors or OpenVINO IR)",
        description="ONNX: the model with BN folded and a dynamic batch, for ONNX Runtime "
        "and friends. safetensors: the weights. Both carry the model name, classes and "
        "preprocessing as metadata. The format follows the file's suffix unless --format.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CKPT")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="FILE.onnx / .safetensors / .xml (OpenVINO IR, with its .bin)",
    )
    p.add_argument("--format", choices=("onnx", "safetensors", "openvino"))
    add_published_options(p)
    p.set_defaults(func=cmd_export)


def _add_quantize(sub: Any) -> None:
    p = sub.add_parser(
        "quantize",
        help="post-training int8 quantization of a checkpoint",
        description="Static int8 quantization (PyTorch's export flow, x86 quantizer: BN "
        "folded, per-channel int8 weights, uint8 activations) calibrated on N training images; "
        "layers whose int8 error is above --max-layer-error run in bf16 (fp32 on a CPU "
        "without native bf16). Reports top-1 of fp32 and int8 on the test split (val where "
        "there is none) and their agreement, and writes a .pt2 file that eval, predict and "
        "bench load.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CKPT")
    p.add_argument("--data", help="dataset (default: the one it was trained on)")
    p.add_argument("-o", "--output", type=Path, help="FILE.pt2 (default: CKPT's name + .int8.pt2)")
    p.add_argument(
        "--calibration",
        type=positive_int,
        default=512,
        metavar="N",
        help="training images that set the activation ranges (default 512)",
    )
    p.add_argument(
        "--max-layer-error",
        type=float,
        default=0.05,
        metavar="E",
        help="relative error above which a layer is kept out of int8 (default 0.05)",
    )
    p.add_argument(
        "--no-compile",
        action="store_true",
        help="measure int8 on the reference path (no torch.compile build)",
    )
    p.add_argument("--batch-size", type=positive_int, default=250)
    p.set_defaults(func=cmd_quantize)


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="time inference engines and pick the fastest",
        description="Times every inference engine (eager fp32/bf16 with BN folded and "
        "channels_last, torch.compile, ONNX Runtime) on one batch shape and reports images/s, "
        "the picked engine and each engine's error against the fp32 model. MODEL is a "
        "registered name, a checkpoint or an int8 .pt2 file from `resnetlab quantize`.",
    )
    p.add_argument("model", metavar="MODEL|CKPT")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--image-size", type=positive_int, help="input side (default: native)")
    p.add_argument(
        "--engines",
        nargs="+",
        metavar="ENGINE",
        help="eager eager-bf16 compile compile-bf16 onnxruntime int8 onnxruntime-int8 openvino "
        "openvino-bf16 openvino-int8; for a .pt2 file: int8 int8-reference (default: all that "
        "suit this machine)",
    )
    p.add_argument("--seconds", type=float, default=2.0, help="timing per engine")
    add_published_options(p, "--arch")
    p.set_defaults(func=cmd_bench)


def _say(note: str) -> None:
    if note:
        print(note, file=sys.stderr, flush=True)


def _eval_split(args: argparse.Namespace, predictor: Predictor) -> Split:
    """The split ``eval`` measures: ``--split``, else test, else val (said, with why val's
    number is optimistic); ``args.split`` is set to the one chosen."""
    if args.split is not None:
        return predictor.split(args.split, args.data)
    args.split, data = predictor.default_split(args.data)
    if args.split == "val":
        print(
            "no --split and the data has no test split: evaluating on val, which chose the "
            "checkpoint in training (so this accuracy is optimistic)",
            file=sys.stderr,
        )
    if args.out is not None:
        check_writable(args.out / f"eval-{args.split}.json")
    return data


def cmd_eval(args: argparse.Namespace) -> int:
    from resnetlab.runtime.metrics import top5_shown

    if args.out is not None:
        check_folder(args.out)
        args.out.mkdir(parents=True, exist_ok=True)
        if args.split is not None:
            check_writable(args.out / f"eval-{args.split}.json")
    predictor = _load_for_eval(args)
    say_published(predictor)
    data = _eval_split(args, predictor)
    fit = predictor.fit_batch(max(1, min(args.batch_size, len(data))))
    _say(fit.note)  # a batch that does not fit runs in pieces, with the same results
    metrics, cm = predictor.evaluate(data, fit=fit)  # the batch just sized, not sized again
    per_class = dict(zip(predictor.classes, cm.per_class_accuracy(), strict=True))
    result = {
        "checkpoint": str(args.checkpoint),
        "split": args.split,
        "images": len(data),
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "loss": metrics["loss"],
        "per_class_top1": {k: 100 * v for k, v in per_class.items()},
        "confusion": cm.matrix.tolist(),
        "classes": list(predictor.classes),
    }
    if args.format == "json":
        sys.stdout.write(json_text(result) + "\n")
    else:
        print(
            f"{args.checkpoint} on {args.split} ({len(data):,} images): "
            f"top-1 {metrics['top1']:.2f}%, "
            + (f"top-5 {metrics['top5']:.2f}%, " if top5_shown(len(predictor.classes)) else "")
            + f"loss {metrics['loss']:.4f}"
        )
        print(cm.to_text(predictor.classes))
    if predictor.weights is not None:
        w = predictor.weights
        same = w.eval_data == (args.data or predictor.config.data.source, args.split)
        result["published"] = {"top1": w.top1, "top5": w.top5, "data": w.metric_data}
        result["same_data_as_published"] = same
        if args.format != "json":
            print(
                f"published: {w.published()}; measured: top-1 {metrics['top1']:.2f}% on "
                f"{args.split} of {args.data or predictor.config.data.source}"
                + (
                    " (the same data)"
                    if same
                    else f" (this data differs from theirs: {w.metric_data}; not comparable)"
                )
            )
    if args.out is not None:
        write_text_atomic(args.out / f"eval-{args.split}.json", json_text(result))
        cm.plot(
            args.out / f"confusion-{args.split}.png", predictor.classes, title=f"{args.split} split"
        )
        print(f"wrote {args.out / f'eval-{args.split}.json'} and confusion-{args.split}.png")
    return 0


def _load_for_eval(args: argparse.Namespace) -> Any:
    """A checkpoint, a published file, or an int8 ``.pt2`` (compiled unless --no-compile:
    over a whole split the int8 kernels repay their build)."""
    from resnetlab.infer.int8_file import is_quantized_file
    from resnetlab.infer.predict import Predictor

    if is_quantized_file(args.checkpoint):
        return Predictor.from_quantized(args.checkpoint, compile=not args.no_compile)
    return Predictor.load(args.checkpoint, model=args.arch, layout=args.layout)


def cmd_quantize(args: argparse.Namespace) -> int:
    from resnetlab.infer.int8_checkpoint import quantize_checkpoint
    from resnetlab.infer.int8_file import SUFFIX

    if not args.max_layer_error > 0:
        raise UsageError(f"--max-layer-error must be positive, got {args.max_layer_error}")
    out = args.output or args.checkpoint.with_name(args.checkpoint.stem + ".int8" + SUFFIX)
    if out.suffix.lower() != SUFFIX:
        raise UsageError(f"the int8 file is a {SUFFIX} archive; got {out}")
    print(
        f"quantizing {args.checkpoint} (calibration: {args.calibration} training images)…",
        flush=True,
    )
    report = quantize_checkpoint(
        args.checkpoint,
        out,
        data=args.data,
        calibration=args.calibration,
        max_layer_error=args.max_layer_error,
        compile=not args.no_compile,
        batch_size=args.batch_size,
    )
    print(report.to_text())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from resnetlab.infer.predict import Predictor

    if args.explain is not None:  # before any work: the folder and captum
        from resnetlab.infer.explain import require_captum

        check_folder(args.explain)
        require_captum()
    predictor = Predictor.load(args.checkpoint, model=args.arch, layout=args.layout)
    say_published(predictor)
    files = [str(p) for p in args.images]
    fit = predictor.fit_batch(len(files))
    _say(fit.note)  # decoded and run in pieces if need be
    preds = predictor.predict_files(files, top_k=args.top_k, fit=fit)
    pngs = [str(p) for p, _ in predictor.explain_files(files, args.explain)] if args.explain else []
    if args.format == "json":
        data = [
            {"file": p.file, "top": [{"class": c, "probability": v} for c, v in p.top]}
            | ({"gradcam": pngs[i]} if pngs else {})
            for i, p in enumerate(preds)
        ]
        sys.stdout.write(json_text(data) + "\n")  # NaN as null: JSON has no NaN
        return 0
    for i, p in enumerate(preds):
        best = ", ".join(f"{c} {100 * v:.1f}%" for c, v in p.top)
        print(f"{p.file}: {best}" + (f" (Grad-CAM: {pngs[i]})" if pngs else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from resnetlab.infer.export import (
        export_format,
        export_onnx_file,
        export_openvino_file,
        export_safetensors,
    )

    fmt = export_format(args.output, args.format)
    writers = {"onnx": export_onnx_file, "safetensors": export_safetensors}
    write = writers.get(fmt, export_openvino_file)
    print(f"wrote {write(args.checkpoint, args.output, model=args.arch, layout=args.layout)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from resnetlab.analysis.compare import default_input_size
    from resnetlab.analysis.memory_estimate import check_memory
    from resnetlab.infer.batching import int8_pieces
    from resnetlab.infer.engines import ENGINES
    from resnetlab.infer.fast import default_engines, optimize_for_inference
    from resnetlab.models.registry import get_entry

    for engine in args.engines or []:
        if engine not in (*ENGINES, "int8-reference"):
            raise UsageError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    from resnetlab.infer.int8_file import is_quantized_file
    from resnetlab.interop.published import is_weights_name

    if is_quantized_file(args.model):
        return _bench_quantized(args)
    if Path(args.model).exists() or is_weights_name(args.model):  # a run folder: says so
        from resnetlab.infer.predict import Predictor

        p = Predictor.load(
            args.model, device="cpu", model=args.arch, layout=args.layout, onnx=False
        )
        say_published(p)
        model, channels = p.model, p.data_size[0]
        side = args.image_size or p.preprocess.image_size
        label = f"{args.model} ({p.config.model.name})"
        from resnetlab.infer.fast import val_check

        check, why = val_check(p, side)
    else:
        from resnetlab.models.registry import create_model

        _, channels, native, _ = default_input_size(get_entry(args.model).spec)
        model, side, label = create_model(args.model), args.image_size or native, args.model
        check, why = None, "a bare model name has no data (give a checkpoint)"
    size = (args.batch_size, channels, side, side)
    check_memory(model, size, training=False)  # before the batch exists; a bad shape too
    _say(int8_pieces(args.engines or default_engines(torch.device("cpu")), args.batch_size))
    x = torch.randn(*size)
    print(
        f"{label}: batch {args.batch_size}×{channels}×{side}×{side}; timing engines "
        "(torch.compile builds first, which takes a while)…",
        flush=True,
    )
    print(f"int8 accuracy check: {check.source if check else 'not possible: ' + why}", flush=True)
    fast = optimize_for_inference(
        model, x, engines=args.engines, min_seconds=args.seconds, check=check
    )
    print(fast.report())
    print(f"picked: {fast.engine}")
    return 0


def _bench_quantized(args: argparse.Namespace) -> int:
    """``bench FILE.pt2``: the file's int8 program, compiled (``int8``) and as it is
    (``int8-reference``), on the batch shape asked for."""
    import torch

    from resnetlab.infer.batching import check_program_batch
    from resnetlab.infer.int8_checkpoint import bench_quantized
    from resnetlab.infer.predict import Predictor

    p = Predictor.from_quantized(args.model)
    c, side = p.data_size[0], args.image_size or p.preprocess.image_size
    _say(check_program_batch(p, (args.batch_size, c, side, side)))  # memory, pieces
    x = torch.randn(args.batch_size, c, side, side)
    print(
        f"{args.model} ({p.config.model.name}, int8): batch {args.batch_size}×{c}×{side}×{side}",
        flush=True,
    )
    fast = bench_quantized(args.model, x, engines=args.engines, min_seconds=args.seconds)
    print(fast.report())
    print(f"picked: {fast.engine}")
    return 0
