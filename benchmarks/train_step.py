"""Training throughput of one model: a default eager fp32 NCHW loop against resnetlab's fast
path (bf16 autocast + channels_last + foreach SGD, no per-step host sync), and the data
loader alone against the training it feeds, all timed in the same run, in interleaved rounds
(ratios survive a noisy shared machine better than figures):

    .venv/bin/python benchmarks/train_step.py --model resnet20 --batch-size 128

Model steps use synthetic 32×32 batches; SGD with momentum and weight decay, as in training.
The baseline is what a plain PyTorch script does: ``torch.optim.SGD`` with its defaults
(on a CPU, a per-parameter loop). The loader is the real one (in-memory uint8 CIFAR-size
images, shuffling, pad-and-crop, flip, normalise), on 50,000 synthetic images.

To read the ratio: where the convolutions dominate a step, bf16 cannot be faster than fp32 by
more than the ratio of the two dtypes' matmul rates, which is measured here too.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from common import interleaved, train_steps

from resnetlab.models import create_model
from resnetlab.runtime.execution import Execution, choose, hardware, matmul_gflops


def trainer(
    model_name: str,
    place: Execution,
    batch: int,
    side: int,
    optim: str | None,
    compile_model: bool = False,
) -> Callable[[int], float]:
    """A function that runs ``steps`` training steps and returns their seconds; ``optim``:
    SGD's implementation (``foreach``, ``fused``, or None for its default)."""
    torch.manual_seed(0)
    kind = {optim: True} if optim else {}
    steps = train_steps(
        create_model(model_name),
        place,
        batch=batch,
        side=side,
        classes=10,
        optim={"weight_decay": 5e-4, **kind},
        compile_model=compile_model,
    )
    steps(3)  # warm-up: oneDNN builds its kernels on the first calls (and compiling, its code)
    return steps


def loader_images_per_s(batch: int, side: int, n: int = 50_000) -> float:
    """One epoch of the training loader (shuffle + batched augmentation) on the CPU."""
    from resnetlab.data.augment import Preprocess
    from resnetlab.data.loaders import BatchPlan, TrainBatches
    from resnetlab.data.tensors import ImageTensors

    g = torch.Generator().manual_seed(0)
    data = ImageTensors(
        torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g),
        torch.arange(n) % 10,
        tuple("abcdefghij"),
    )
    pre = Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3, image_size=side)
    batches = TrainBatches(data, pre, BatchPlan(batch, seed=0, epoch=0), torch.device("cpu"))
    start = time.perf_counter()
    seen = sum(y.shape[0] for _, y in batches)
    return seen / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--side", type=int, default=32)
    p.add_argument(
        "--compile",
        action="store_true",
        help="also the fast path compiled (torch.compile; slow to build)",
    )
    p.add_argument("--fused", action="store_true", help="also the fast path with fused SGD")
    args = p.parse_args()
    b, side = args.batch_size, args.side
    print(f"{args.model}, batch {b}, {side}×{side}; {hardware()}", flush=True)
    fast_place = choose("cpu", "auto")
    layout = " + NHWC" if fast_place.channels_last else ""
    fast = f"fast path ({fast_place.precision}{layout}, foreach SGD)"
    runs = {
        "default eager fp32 NCHW": trainer(args.model, choose("cpu", "fp32"), b, side, None),
        fast: trainer(args.model, fast_place, b, side, "foreach"),
    }
    if args.fused:
        runs["fast path, fused SGD"] = trainer(args.model, fast_place, b, side, "fused")
    if args.compile:
        runs["fast path, compiled"] = trainer(args.model, fast_place, b, side, "foreach", True)
        if args.fused:
            runs["fast path, compiled, fused SGD"] = trainer(
                args.model, fast_place, b, side, "fused", True
            )
    ips, times = interleaved(
        {
            name: (lambda steps=steps: b * args.steps / steps(args.steps))
            for name, steps in runs.items()
        },
        args.rounds,
    )
    base = ips["default eager fp32 NCHW"]
    for name, v in times.items():
        print(f"{name:<44} {ips[name]:8.0f} images/s  (rounds: {' '.join(f'{a:.0f}' for a in v)})")
    for name in list(runs)[1:]:
        print(f"{'ratio ' + name.split(' (')[0] + ' / default':<44} {ips[name] / base:8.2f}×")
    fastest = max(ips.values())
    fp32_mm, bf16_mm = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    print(
        f"{'matmul 2048² GFLOP/s, fp32 / bf16':<44} {fp32_mm:8.0f} / {bf16_mm:.0f}"
        f"  (ratio {bf16_mm / fp32_mm:.2f}×)"
    )
    loader = loader_images_per_s(b, side)
    print(f"{'loader alone':<44} {loader:8.0f} images/s")
    print(f"{'loader / fastest training':<44} {loader / fastest:8.1f}×")


if __name__ == "__main__":
    main()
