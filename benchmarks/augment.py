"""Batched augmentation: resnetlab's own ops against kornia's, in one run, interleaved.

    python benchmarks/augment.py [--batch 256] [--side 32] [--rounds 7] [--json OUT]

Images per second of TrivialAugment, RandAugment and AutoAugment (and the CIFAR base of
pad-and-crop + flip) on one batch of real-looking uint8 images, each policy done by
``resnetlab.data.policies`` (on uint8, as the loader keeps them, and on 0-255 floats) and by
kornia's ``kornia.augmentation`` (on 0-1 floats, its convention; on the whole batch, where
its policies draw one op for all the images, and image by image, which draws per image as
ours do), measured in rounds that
alternate the engines so that a slow spell of the shared machine hits both. kornia is
optional: without it the table shows ours only and says why. The question it answers is
the issue's: does a kept library measure fast enough to replace our own ops, and does the
loader still outrun training (a ResNet-20 step trains ~1,000-1,400 images/s on 2 cores)?
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
import torch
from torch import Tensor

from resnetlab.data.augment import random_crop, random_flip
from resnetlab.data.policies import augment_policy
from resnetlab.runtime.execution import hardware


def rate(fn: Callable[[], Any], images: int, calls: int) -> Callable[[], float]:
    """A function timing ``calls`` calls of ``fn`` and returning images per second."""

    def measure() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return images * calls / (time.perf_counter() - start)

    fn()  # warm-up: first-call allocation and kornia's lazy set-up
    return measure


def ours(x8: Tensor, policy: str, gen: torch.Generator) -> dict[str, Callable[[], Any]]:
    x255 = x8.float()
    if policy == "base":
        return {
            "ours uint8": lambda: random_flip(random_crop(x8, 4, gen), gen),
            "ours float": lambda: random_flip(random_crop(x255, 4, gen), gen),
        }
    return {
        "ours uint8": lambda: augment_policy(x8, policy, gen),
        "ours float": lambda: augment_policy(x255, policy, gen),
    }


def kornia_ops(x8: Tensor, policy: str) -> tuple[dict[str, Callable[[], Any]], str]:
    """kornia's version of ``policy`` on 0-1 floats, or no entry and the reason."""
    try:
        import kornia.augmentation as K  # type: ignore[import-not-found]
    except ImportError as err:
        return {}, f"kornia not installed ({err}); pip install kornia"
    x01 = x8.float() / 255
    aug: Any
    if policy == "base":
        side = x8.shape[-1]
        aug = K.AugmentationSequential(
            K.RandomCrop((side, side), padding=4), K.RandomHorizontalFlip()
        )
    else:
        aug = {  # the settings our policies use: RandAugment two ops at 9 of 31
            "trivialaugment": lambda: K.auto.TrivialAugment(),
            "randaugment": lambda: K.auto.RandAugment(n=2, m=9),
            "autoaugment": lambda: K.auto.AutoAugment("cifar10"),
        }[policy]()
    # kornia's policies draw one op (and strength) per call, for the whole batch; ours draw
    # per image, as torchvision's do per PIL image. Called image by image, kornia does that.
    return {
        "kornia batch": lambda: aug(x01),
        "kornia per image": lambda: torch.cat([aug(img[None]) for img in x01]),
    }, ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--side", type=int, default=32)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=5, help="calls per timing")
    p.add_argument(
        "--policies", nargs="+", default=["base", "trivialaugment", "randaugment", "autoaugment"]
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    print(f"batch {args.batch}, {args.side}×{args.side}; {hardware()}", flush=True)
    gen = torch.Generator().manual_seed(0)
    # Smooth images with edges, not noise: histogram ops (equalize, autocontrast) see a
    # realistic spread of values.
    base = torch.rand(args.batch, 3, args.side // 4, args.side // 4, generator=gen) * 255
    x8 = torch.nn.functional.interpolate(base, size=args.side, mode="bilinear").to(torch.uint8)
    table: dict[str, dict[str, Any]] = {}
    for policy in args.policies:
        fns = ours(x8, policy, gen)
        theirs, reason = kornia_ops(x8, policy)
        fns |= theirs
        rates = {name: rate(fn, args.batch, args.calls) for name, fn in fns.items()}
        medians, rounds = common.interleaved(rates, args.rounds)
        table[policy] = {"median": medians, "rounds": rounds, "skipped": reason}
        cells = "  ".join(f"{name} {v:8.0f}" for name, v in medians.items())
        ratio = ""
        if "kornia batch" in medians:
            ratio = "  ours uint8 / kornia batch, per image: " + ", ".join(
                f"{medians['ours uint8'] / medians[k]:.2f}×"
                for k in ("kornia batch", "kornia per image")
            )
        print(f"{policy:15s} images/s: {cells}{ratio}{'  ' + reason if reason else ''}")
    if args.json:
        args.json.write_text(
            json.dumps({"cpu": hardware(), "batch": args.batch, "policies": table}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
