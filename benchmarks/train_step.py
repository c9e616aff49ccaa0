"""Training throughput of one model, fp32 NCHW against bf16 autocast + channels_last, timed
in the same run (a ratio, which survives a noisy shared machine better than a figure):

    .venv/bin/python benchmarks/train_step.py --model resnet20 --batch-size 256

Synthetic 32×32 batches (the data pipeline is not timed); SGD with momentum, as in training.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from resnetlab.models import create_model
from resnetlab.train.device import choose, hardware
from resnetlab.train.loop import autocast, to_input


def images_per_s(model_name: str, precision: str, batch: int, steps: int, side: int) -> float:
    place = choose("cpu", precision)
    torch.manual_seed(0)
    model = create_model(model_name)
    if place.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=True)
    x = torch.randn(batch, 3, side, side)
    y = torch.randint(0, 10, (batch,))
    for i in range(steps + 3):  # three warm-up steps
        if i == 3:
            start = time.perf_counter()
        with autocast(place):
            loss = F.cross_entropy(model(to_input(x, place)).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--side", type=int, default=32)
    args = p.parse_args()
    print(f"{args.model}, batch {args.batch_size}, {args.side}×{args.side}; {hardware()}")
    fp32 = images_per_s(args.model, "fp32", args.batch_size, args.steps, args.side)
    bf16 = images_per_s(args.model, "bf16", args.batch_size, args.steps, args.side)
    print(f"fp32 NCHW:                 {fp32:8.0f} images/s")
    print(f"bf16 autocast + NHWC:      {bf16:8.0f} images/s")
    print(f"ratio bf16 / fp32:         {bf16 / fp32:8.2f}×")


if __name__ == "__main__":
    main()
