"""ResNet-50 inference on this machine, every engine timed in one run, reported as ratios to
the default eager fp32 model and to ONNX Runtime fp32 (plus absolute figures):

    .venv/bin/python benchmarks/inference.py [--compile] [--checkpoint RUN/best.pt] [--json F]
    .venv/bin/python benchmarks/inference.py --all-engines [--compile] [--smoke] [--json F]

``--all-engines``: every engine of ``optimize_for_inference`` in one interleaved run (default
eager fp32; our fastest fp32 and bf16; our int8; ONNX Runtime fp32 and int8; OpenVINO
f32/bf16/int8 where installed, else skipped with the reason), for ResNet-50 at 224 (batch 16
and batch 1) and ResNet-20/56 at 32 (batch 256 and batch 1), with each engine's share of the
rate of a 2048² matmul in its dtype (fp32, bf16, int8 ``_int_mm``) measured in the same run.
``--smoke`` shrinks every size so the script's code runs in a minute (figures meaningless).
``--engines``, ``--models`` and ``--batches`` narrow the table to a few rows, still
interleaved, e.g. int8 against compile-bf16 for ResNet-50 at batch 16 in a few minutes:

    .venv/bin/python benchmarks/inference.py --all-engines --engines compile-bf16 int8 \
        --models resnet50_v1_5 --batches 16 --rounds 5 --seconds 30

The default eager fp32 model is timed first, in a default process; then freed memory is kept
(``resnetlab.infer.memory``) and every other engine is timed, in interleaved rounds.

ResNet-50 is torchvision's placement (``resnet50_v1_5``: 4.09 G MACs = 8.18 GFLOP per
224×224 image) so figures compare with other libraries'. BN statistics are randomised so
folding is tested on non-trivial values. Numerics are checked, not assumed: folded vs
unfolded, ONNX Runtime vs PyTorch, and (with ``--checkpoint``, a CIFAR model trained with
resnetlab) bf16 vs fp32 top-1 agreement on real test images.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable

import torch
from common import interleaved
from torch import Tensor, nn

from resnetlab.infer.engines import compiled_runner, eager_runner, onnxruntime_runner
from resnetlab.infer.fast import time_runner
from resnetlab.infer.folding import fold_batchnorm, prepare, randomize_batchnorm
from resnetlab.infer.memory import keep_freed_memory
from resnetlab.models import create_model
from resnetlab.runtime.execution import hardware, matmul_gflops

GFLOP_PER_IMAGE = 8.18  # 2 × 4.09 G MACs, resnet50_v1_5 at 224×224


def plain_runner(model: nn.Module, channels_last: bool) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            out: Tensor = model(
                x.contiguous(memory_format=torch.channels_last) if channels_last else x
            )
        return out

    return run


def time_rounds(
    runners: dict[str, Callable[[Tensor], Tensor]], x: Tensor, rounds: int, seconds: float
) -> dict[str, float]:
    """Images/s of each runner: the median of ``rounds`` interleaved timings."""
    median, ips = interleaved(
        {
            name: (lambda run=run: x.shape[0] / time_runner(run, x, min_seconds=seconds / rounds))
            for name, run in runners.items()
        },
        rounds,
    )
    for name, v in ips.items():
        print(f"  timed {name}: {' '.join(f'{a:.1f}' for a in v)} images/s", flush=True)
    return median


def rel_err(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / a.float().abs().max())


def cifar_agreement(checkpoint: str, limit: int = 2000) -> tuple[float, int]:
    """Top-1 agreement of bf16 and fp32 predictions on real CIFAR test images."""
    from resnetlab.infer.predict import Predictor

    pred = Predictor.load(checkpoint)
    data = pred.split("test")
    from resnetlab.data.augment import eval_transform

    x = eval_transform(data.images[:limit], pred.preprocess)  # type: ignore[attr-defined]
    prepared = prepare(pred.model)
    fp32 = eager_runner(prepared)(x).argmax(1)
    bf16 = eager_runner(prepared, bf16=True)(x).argmax(1)
    return float((fp32 == bf16).float().mean()) * 100, len(x)


# (model, side, GFLOP per image, batch sizes); GFLOP = 2 × MACs of one image.
SUITE = [
    ("resnet50_v1_5", 224, 8.18, (16, 1)),
    ("resnet20", 32, 0.0820, (256, 1)),
    ("resnet56", 32, 0.2508, (256, 1)),
]
SMOKE = [("resnet50_v1_5", 64, 8.18 * (64 / 224) ** 2, (2,)), ("resnet20", 32, 0.0820, (8,))]
ENGINE_DTYPE = {
    "eager": "fp32",
    "compile": "fp32",
    "onnxruntime": "fp32",
    "openvino": "fp32",
    "eager-bf16": "bf16",
    "compile-bf16": "bf16",
    "openvino-bf16": "bf16",
    "int8": "int8",
    "onnxruntime-int8": "int8",
    "openvino-int8": "int8",
}


def selected_engines(args: argparse.Namespace) -> list[str]:
    """``--engines`` as given (compile engines need no ``--compile`` then), else all."""
    if args.engines:
        return list(args.engines)
    engines = [
        "eager",
        "eager-bf16",
        "int8",
        "onnxruntime",
        "onnxruntime-int8",
        "openvino",
        "openvino-bf16",
        "openvino-int8",
    ]
    if args.compile:
        engines[1:1] = ["compile", "compile-bf16"]
    return engines


def selected_suite(
    args: argparse.Namespace,
) -> list[tuple[str, int, float, tuple[int, ...]]]:
    """The suite's rows, narrowed to ``--models`` and ``--batches`` where given."""
    rows = []
    for name, side, gflop, batches in SMOKE if args.smoke else SUITE:
        if args.models and name not in args.models:
            continue
        kept = tuple(b for b in batches if not args.batches or b in args.batches)
        if kept:
            rows.append((name, side, gflop, kept))
    if not rows:
        raise SystemExit("no suite row matches --models/--batches")
    return rows


def print_ratio(ips: dict[str, float], a: str, b: str) -> None:
    """``a``'s images/s over ``b``'s, where both were timed."""
    if a in ips and b in ips:
        print(f"{a} / {b}: {ips[a] / ips[b]:.2f}×")


def engine_table(args: argparse.Namespace) -> dict[str, object]:
    """Every engine, per model and batch size, timed in interleaved rounds."""
    from resnetlab.infer.engines import build_runner

    kept_default: dict[str, float] = {}
    peaks = {
        d: matmul_gflops(t, reps=5 if args.smoke else 30)
        for d, t in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8))
    }
    print(
        "matmul 2048² rate: "
        + ", ".join(f"{d} {v:.0f}" for d, v in peaks.items())
        + " GFLOP/s (int8: GOP/s)",
        flush=True,
    )
    engines = selected_engines(args)
    out: dict[str, object] = {"hardware": hardware(), "matmul_gflops": peaks, "runs": []}
    for name, side, gflop, batches in selected_suite(args):
        base = randomize_batchnorm(create_model(name))
        prepared = prepare(base)
        for batch in batches:
            x = torch.randn(batch, 3, side, side)
            with torch.no_grad():
                ref = base(x)
            runners: dict[str, Callable[[Tensor], Tensor]] = {}
            skipped: dict[str, str] = {}
            for engine in engines:
                try:
                    runners[engine] = build_runner(engine, prepared, x)
                except Exception as exc:  # skipped with its reason, as optimize_for_inference does
                    skipped[engine] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][
                        :100
                    ]
            runners = {"default eager fp32 (NCHW)": plain_runner(base, False), **runners}
            print(f"\n{name}, batch {batch}, {side}×{side}", flush=True)
            ips = time_rounds(runners, x, args.rounds, args.seconds)
            kept_default.setdefault(name, ips["default eager fp32 (NCHW)"])
            rows = []
            print(
                f"{'engine':<26} {'img/s':>9} {'ms/batch':>9} {'× eager':>8} "
                f"{'share':>6} {'rel err':>8}"
            )
            for engine, run in runners.items():
                dtype = ENGINE_DTYPE.get(engine, "fp32")
                share = ips[engine] * gflop / peaks[dtype]
                row = {
                    "engine": engine,
                    "dtype": dtype,
                    "images_per_s": ips[engine],
                    "ms_per_batch": 1000 * batch / ips[engine],
                    "x_default_eager": ips[engine] / ips["default eager fp32 (NCHW)"],
                    "share_of_matmul": share,
                    "max_rel_err": rel_err(ref, run(x)),
                }
                rows.append(row)
                print(
                    f"{engine:<26} {row['images_per_s']:>9.1f} {row['ms_per_batch']:>9.2f} "
                    f"{row['x_default_eager']:>8.2f} {share:>6.0%} "
                    f"{row['max_rel_err']:>8.1e}"
                )
            for engine, why in skipped.items():
                print(f"{engine:<26} skipped: {why}")
            for dtype in ("fp32", "bf16", "int8"):
                ours = [
                    r
                    for r in rows
                    if r["dtype"] == dtype
                    and str(r["engine"]).split("-")[0] in ("eager", "compile", "int8")
                ]
                if ours:
                    best = max(ours, key=lambda r: float(r["images_per_s"]))  # type: ignore[arg-type]
                    print(f"our fastest {dtype}: {best['engine']}")
            print_ratio(ips, "int8", "compile-bf16")
            out["runs"].append(
                {
                    "model": name,
                    "side": side,
                    "batch": batch,  # type: ignore[attr-defined]
                    "engines": rows,
                    "skipped": skipped,
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=6.0, help="timing per engine, all rounds")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (slow to build)")
    ap.add_argument("--checkpoint", help="a trained CIFAR checkpoint for the bf16 agreement check")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--all-engines", action="store_true", help="the engine table (see above)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code runs")
    ap.add_argument("--engines", nargs="+", help="--all-engines: only these (and the baseline)")
    ap.add_argument("--models", nargs="+", help="--all-engines: only these suite models")
    ap.add_argument("--batches", nargs="+", type=int, help="--all-engines: only these batches")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.all_engines:
        print(hardware(), flush=True)
        keep_freed_memory()  # as the commands run; the default process is the other mode
        table = engine_table(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(table, f, indent=2)
        return
    print(f"ResNet-50 (v1.5), batch {args.batch_size}, 224×224; {hardware()}", flush=True)
    base = randomize_batchnorm(create_model("resnet50_v1_5"))
    x = torch.randn(args.batch_size, 3, 224, 224)
    one = x[:1].clone()
    with torch.no_grad():
        ref = base(x)

    # The default model in a default process first: glibc maps and unmaps each activation
    # over 32 MiB on every call. Then freed memory is kept (process-wide, one way) for the rest.
    default = "default eager fp32 (NCHW)"
    ips = time_rounds({default: plain_runner(base, False)}, x, args.rounds, args.seconds)
    latency_eager = time_runner(plain_runner(base, False), one, min_seconds=args.seconds / 2)
    kept = keep_freed_memory()
    prepared = prepare(base)
    folded_nchw = fold_batchnorm(base)
    cl_model = copy.deepcopy(base).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    runners: dict[str, Callable[[Tensor], Tensor]] = {
        "default eager fp32, freed memory kept": plain_runner(base, False),
        "eager fp32 channels_last": plain_runner(cl_model, True),
        "eager fp32 BN folded (NCHW)": plain_runner(folded_nchw, False),
        "eager fp32 BN folded + channels_last": eager_runner(prepared),
        "ONNX Runtime fp32": onnxruntime_runner(fold_batchnorm(base), x),
        "eager bf16 BN folded + channels_last": eager_runner(prepared, bf16=True),
    }
    if args.compile:
        t = time.time()
        runners["compile fp32 (freezing)"] = compiled_runner(prepared, x)
        runners["compile bf16 (freezing)"] = compiled_runner(prepared, x, bf16=True)
        print(f"(compiling took {time.time() - t:.0f} s)", flush=True)
    ips |= time_rounds(runners, x, args.rounds, args.seconds)
    runners[default] = plain_runner(base, False)

    figures = {
        name: {"images_per_s": ips[name], "max_rel_err_vs_fp32": rel_err(ref, run(x))}
        for name, run in runners.items()
    }
    eager, ort = ips[default], ips["ONNX Runtime fp32"]
    print(f"\n{'engine':<40} {'img/s':>8} {'× eager':>8} {'× ORT':>7} {'rel err':>9}")
    for name in [default, *(k for k in figures if k != default)]:
        f = figures[name]
        print(
            f"{name:<40} {ips[name]:>8.1f} {ips[name] / eager:>8.2f} {ips[name] / ort:>7.2f} "
            f"{f['max_rel_err_vs_fp32']:>9.1e}"
        )

    ours = [k for k in figures if "ONNX" not in k]  # resnetlab's own (PyTorch) paths
    fp32_best = max((k for k in ours if "bf16" not in k), key=lambda k: ips[k])
    bf16_best = max((k for k in figures if "bf16" in k), key=lambda k: ips[k])
    fp32_peak = matmul_gflops(torch.float32, reps=30)
    bf16_peak = matmul_gflops(torch.bfloat16, reps=30)
    latency_bf16 = time_runner(runners[bf16_best], one, min_seconds=args.seconds / 2)
    summary = {
        "freed memory kept after the default baseline": kept,
        "fastest fp32 (PyTorch)": fp32_best,
        "fastest fp32 / ORT fp32": ips[fp32_best] / ort,
        "fastest fp32 / default eager fp32": ips[fp32_best] / eager,
        "fp32 matmul 2048² GFLOP/s": fp32_peak,
        "fastest fp32 GFLOP/s (img/s × 8.18)": ips[fp32_best] * GFLOP_PER_IMAGE,
        "ORT fp32 GFLOP/s (img/s × 8.18)": ort * GFLOP_PER_IMAGE,
        "3× default eager fp32 needs GFLOP/s": 3 * eager * GFLOP_PER_IMAGE,
        "fastest bf16": bf16_best,
        "fastest bf16 / ORT fp32": ips[bf16_best] / ort,
        "bf16 matmul 2048² GFLOP/s": bf16_peak,
        "fastest bf16 GFLOP/s (img/s × 8.18)": ips[bf16_best] * GFLOP_PER_IMAGE,
        "fastest bf16 share of matmul GFLOP/s": ips[bf16_best] * GFLOP_PER_IMAGE / bf16_peak,
        "batch-1 latency ms, default eager fp32": latency_eager * 1000,
        "batch-1 latency ms, fastest bf16": latency_bf16 * 1000,
        "batch-1 latency ratio bf16 / eager fp32": latency_bf16 / latency_eager,
        "BN folding max rel err (fp32)": figures["eager fp32 BN folded (NCHW)"][
            "max_rel_err_vs_fp32"
        ],
        "ONNX Runtime vs PyTorch max rel err": figures["ONNX Runtime fp32"]["max_rel_err_vs_fp32"],
    }
    if args.checkpoint:
        agree, n = cifar_agreement(args.checkpoint)
        summary[f"bf16 vs fp32 top-1 agreement, {n} CIFAR test images (%)"] = agree
    print()
    for k, v in summary.items():
        if isinstance(v, float):
            print(f"{k:<58} {v:.3g}" if abs(v) < 1e-2 else f"{k:<58} {v:.3f}")
        else:
            print(f"{k:<58} {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "hardware": hardware(),
                    "batch_size": args.batch_size,
                    "engines": figures,
                    "summary": summary,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
