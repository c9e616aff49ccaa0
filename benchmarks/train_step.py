"""Training throughput of one model, fp32 NCHW against bf16 autocast + channels_last, and
the data loader alone against the training it feeds, all timed in the same run (ratios
survive a noisy shared machine better than figures):

    .venv/bin/python benchmarks/train_step.py --model resnet20 --batch-size 256

Model steps use synthetic 32×32 batches; SGD with momentum, as in training. The loader is
the real one (in-memory uint8 CIFAR-size images, shuffling, pad-and-crop, flip, normalise),
on 50,000 synthetic images.
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


def loader_images_per_s(batch: int, side: int, n: int = 50_000) -> float:
    """One epoch of the training loader (shuffle + batched augmentation) on the CPU."""
    from resnetlab.data.augment import Preprocess
    from resnetlab.data.loaders import TrainBatches
    from resnetlab.data.tensors import ImageTensors

    g = torch.Generator().manual_seed(0)
    data = ImageTensors(torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g),
                        torch.arange(n) % 10, tuple("abcdefghij"))  # fmt: skip
    pre = Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3, image_size=side)
    batches = TrainBatches(data, pre, batch_size=batch, seed=0, epoch=0,
                           device=torch.device("cpu"))  # fmt: skip
    start = time.perf_counter()
    seen = sum(y.shape[0] for _, y in batches)
    return seen / (time.perf_counter() - start)


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
    loader = loader_images_per_s(args.batch_size, args.side)
    print(f"loader alone:              {loader:8.0f} images/s")
    print(f"loader / bf16 training:    {loader / bf16:8.1f}×")


if __name__ == "__main__":
    main()
