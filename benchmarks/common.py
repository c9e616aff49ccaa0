"""What the benchmark scripts share (they import it as ``common``: a script's own folder is
on ``sys.path``): timing in interleaved rounds, and synthetic training steps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.runtime.execution import Execution, autocast, to_input


def interleaved(
    rates: dict[str, Callable[[], float]], rounds: int
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Measure each rate once per round, in turn (A B C A B C …), so that a slow spell of
    the shared machine hits them all alike. Returns each one's median and all its values."""
    values: dict[str, list[float]] = {name: [] for name in rates}
    for _ in range(rounds):
        for name, rate in rates.items():
            values[name].append(rate())
    return {k: sorted(v)[len(v) // 2] for k, v in values.items()}, values


def train_steps(
    model: nn.Module,
    place: Execution,
    *,
    batch: int,
    side: int,
    classes: int,
    optim: dict[str, Any],
    compile_model: bool = False,
) -> Callable[[int], float]:
    """A function that runs n SGD training steps of ``model`` on one synthetic batch, placed
    as resnetlab's training loop places it (``place``: device, autocast, channels_last),
    and returns their seconds. ``optim``: SGD's keywords beyond lr and momentum."""
    device = place.device
    if place.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, **optim)
    net = torch.compile(model) if compile_model else model
    x = to_input(torch.randn(batch, 3, side, side, device=device), place)  # laid out once
    y = torch.randint(0, classes, (batch,), device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def steps(n: int) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(n):
            with autocast(place):
                loss = F.cross_entropy(net(to_input(x, place)).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        return time.perf_counter() - start

    return steps
