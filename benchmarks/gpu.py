"""The GPU half of the speed benchmarks, written to run as is on a machine with a CUDA GPU
(the development machine has none, so none of these figures is measured yet):

    python benchmarks/gpu.py resnet50                    # training vs torchvision's ResNet-50
    python benchmarks/gpu.py cifar-epoch --data ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/gpu.py time-to-94 --data ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/gpu.py all --data … --json gpu.json

- ``resnet50``: training images/s of ``resnet50_v1_5`` and torchvision's ``resnet50`` under
  the same settings (bf16 autocast, channels_last, ``torch.compile``, SGD, synthetic data,
  batch 256), timed in interleaved rounds in one run; the ratio, and the achieved TFLOP/s
  (3 × forward FLOPs per image) as a fraction of a large bf16 matmul's rate measured in the
  same run. Without torchvision only ours is timed.
- ``cifar-epoch``: seconds per training epoch of ResNet-20 and ResNet-18 (CIFAR stem) with
  the ``fast`` recipe through ``resnetlab``'s own training loop (data resident on the GPU,
  augmentation there); the first epoch includes compilation, so the last is the figure.
- ``time-to-94``: a CIFAR ResNet-18 trained with the ``fast`` recipe for a fixed schedule
  chosen in advance (model selected on the validation split, test split read once at the
  end): wall time and test top-1. If it reaches 94%, the wall time bounds the time to 94%.

``--smoke`` shrinks everything so the code runs on a CPU in seconds (the tests use it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from common import interleaved, train_steps
from torch import nn

from resnetlab.models import create_model
from resnetlab.runtime.execution import choose, hardware, matmul_gflops

GFLOP_PER_IMAGE = 8.18  # resnet50_v1_5 forward at 224×224 (2 × 4.09 G MACs)


def bench_resnet50(args: argparse.Namespace) -> dict[str, Any]:
    place = choose(args.device, "auto")  # bf16 + channels_last where the device runs bf16
    device = place.device
    optim = {
        "weight_decay": 5e-5,
        **({"fused": True} if device.type == "cuda" else {"foreach": True}),
    }
    batch, side, steps, rounds = (2, 64, 1, 2) if args.smoke else (args.batch_size, 224, 20, 3)
    candidates: dict[str, Callable[[], nn.Module]] = {
        "resnetlab resnet50_v1_5": lambda: create_model("resnet50_v1_5")
    }
    try:
        import torchvision

        candidates["torchvision resnet50"] = lambda: torchvision.models.resnet50()
    except Exception as err:  # not installed, or its compiled ops do not load (this CPU box)
        print(f"torchvision unavailable ({type(err).__name__}): timing resnetlab only")
    counts = {
        name: sum(p.numel() for p in make().parameters()) for name, make in candidates.items()
    }
    assert len(set(counts.values())) == 1, f"not the same network: {counts}"
    runners = {}
    for name, make in candidates.items():
        torch.manual_seed(0)
        runners[name] = train_steps(
            make(),
            place,
            batch=batch,
            side=side,
            classes=1000,
            optim=optim,
            compile_model=not args.no_compile,
        )
        start = time.perf_counter()
        runners[name](3)  # warm-up: compilation, cuDNN autotuning
        print(f"{name}: warm-up (compile) {time.perf_counter() - start:.0f} s", flush=True)
    median, ips = interleaved(
        {name: (lambda run=run: batch * steps / run(steps)) for name, run in runners.items()},
        rounds,
    )
    n = 512 if args.smoke else 8192
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_gflops(dtype, device, n=n, reps=2 if args.smoke else 50) / 1000
    ours = median["resnetlab resnet50_v1_5"]
    flops = 3 * GFLOP_PER_IMAGE * (side / 224) ** 2 / 1000  # TFLOP per trained image
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else hardware(),
        "batch": batch,
        "side": side,
        "compile": not args.no_compile,
        "images_per_s": median,
        "rounds": ips,
        "matmul_tflops": peak,
        "resnetlab_tflops": ours * flops,
        "resnetlab_share_of_matmul": ours * flops / peak,
    }
    if "torchvision resnet50" in median:
        out["resnetlab_over_torchvision"] = ours / median["torchvision resnet50"]
    for name, v in ips.items():
        print(
            f"{name:<28} {median[name]:9.1f} images/s  (rounds: {' '.join(f'{a:.1f}' for a in v)})"
        )
    if "resnetlab_over_torchvision" in out:
        print(f"{'resnetlab / torchvision':<28} {out['resnetlab_over_torchvision']:9.3f}×")
    print(
        f"{'achieved TFLOP/s':<28} {ours * flops:9.3g}  ({100 * ours * flops / peak:.0f}% of "
        f"a {n}² matmul's {peak:.3g})"
    )
    return out


def _fit(data: str, model: str, epochs: int, over: dict[str, Any], smoke: bool) -> Any:
    from resnetlab.cli.console import console_log
    from resnetlab.runtime.config import resolve_config
    from resnetlab.train.fitting import fit

    cuda = torch.cuda.is_available()
    cfg = {
        "data.source": data,
        "model.name": model,
        "run.epochs": epochs,
        "run.compile": cuda,
        "run.out_dir": tempfile.mkdtemp(prefix="gpu-bench-"),
        "run.name": model,
        **over,
    }
    if model == "resnet18":
        cfg["model.options.stem"] = "cifar"  # 3×3 stem, no max-pool: the usual CIFAR ResNet-18
    if smoke:
        # 5 images a class of each split: the code path, not a measurement (the tests run it)
        cfg |= {"data.limit_per_class": 5, "data.batch_size": 16, "data.eval_batch_size": 100}
    with console_log():  # the run's lines, as `resnetlab train` prints them
        return fit(resolve_config("fast", cfg))


def bench_cifar_epoch(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in ("resnet20", "resnet18"):
        result = _fit(args.data, model, 1 if args.smoke else 3, {"run.test": False}, args.smoke)
        rows = [
            json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
        ]
        times = [r["train_time_s"] for r in rows]
        run = json.loads((result.run_dir / "results.json").read_text())
        out[model] = {
            "epoch_train_s": times,
            "images_per_s": rows[-1]["images_per_s"],
            **{k: run[k] for k in ("device", "precision", "channels_last")},
        }
        print(
            f"{model}: seconds per epoch {' '.join(f'{t:.2f}' for t in times)} (the first "
            f"includes compilation); {rows[-1]['images_per_s']:.0f} images/s"
        )
    return out


def bench_time_to_94(args: argparse.Namespace) -> dict[str, Any]:
    over = {"data.batch_size": 512, "optim.lr": 0.4, "schedule.warmup_epochs": 2}
    epochs = 1 if args.smoke else args.epochs
    start = time.perf_counter()
    result = _fit(args.data, "resnet18", epochs, over, args.smoke)
    wall = time.perf_counter() - start
    top1 = result.test["top1"] if result.test else float("nan")
    print(
        f"ResNet-18 (CIFAR stem), fast recipe, {epochs} epochs: test top-1 {top1:.2f}% "
        f"after {wall:.0f} s ({'reaches' if top1 >= 94 else 'does not reach'} 94%)"
    )
    return {"epochs": epochs, "wall_s": wall, "test_top1": top1, "reaches_94": top1 >= 94}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=("resnet50", "cifar-epoch", "time-to-94", "all"))
    p.add_argument("--data", default="cifar10", help="CIFAR-10: a name, folder or archive")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=256, help="resnet50 training batch")
    p.add_argument("--epochs", type=int, default=30, help="time-to-94 schedule length")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--smoke", action="store_true", help="tiny settings: check the code on a CPU")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    print(f"{hardware()}; device {args.device}", flush=True)
    parts = {
        "resnet50": bench_resnet50,
        "cifar-epoch": bench_cifar_epoch,
        "time-to-94": bench_time_to_94,
    }
    chosen = list(parts) if args.what == "all" else [args.what]
    results = {name: parts[name](args) for name in chosen}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"hardware": hardware(), **results}, f, indent=2, default=str)
    return results


if __name__ == "__main__":
    main()
