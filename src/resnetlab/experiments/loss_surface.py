"""Loss landscapes around a trained model (Li et al., 2018, "Visualizing the Loss Landscape
of Neural Nets").

The model's weights θ are moved along random directions δ, η: the loss is evaluated at
θ + αδ (1-D) and θ + αδ + βη (2-D) on a fixed set of training images. Each direction is
*filter-normalised* (Li et al. §4): drawn from N(0, 1), then every filter (one output
channel of a conv, one row of a linear layer) is rescaled to the norm of the same filter
in θ, so that the plot's scale means the same thing in every layer and network. As in the
authors' code (``--xignore biasbn``), biases and BN parameters are not moved (their
direction is zero), and BN uses its trained running statistics (evaluation mode).
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from resnetlab.fileio import write_bytes_atomic, write_text_atomic
from resnetlab.runtime.evaluate import evaluate
from resnetlab.runtime.execution import Execution

log = logging.getLogger(__name__)


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> list[Tensor]:
    """One random direction per parameter of ``model`` (in ``parameters()`` order): zero
    for biases and BN weights (1-D), and for every weight of 2 or more dimensions a Gaussian
    draw whose filters (slices along dim 0) have the norms of the model's own filters."""
    out = []
    for p in model.parameters():
        if p.dim() <= 1:
            out.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        p_norm = p.detach().flatten(1).norm(dim=1)
        scale = (p_norm / d_norm).view(-1, *([1] * (p.dim() - 1)))
        out.append(d * scale)
    return out


@torch.no_grad()
def set_weights(
    model: nn.Module, base: list[Tensor], moves: list[tuple[float, list[Tensor]]]
) -> None:
    """θ = base + Σ coefficient · direction, in place."""
    for i, p in enumerate(model.parameters()):
        value = base[i].clone()
        for coeff, direction in moves:
            if coeff:
                value.add_(direction[i], alpha=coeff)
        p.copy_(value)


def loss_and_accuracy(
    model: nn.Module, batches: list[tuple[Tensor, Tensor]], place: Execution
) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy (%) of ``model`` over ``batches``."""
    result = evaluate(model, batches, place=place)
    return result["loss"], result["top1"]


@dataclass
class Grid:
    """The 1-D curve along δ and the 2-D surface over (δ, η); NaN where not yet computed."""

    coords: np.ndarray  # (G,) the α (and β) values
    loss1d: np.ndarray  # (G,)
    acc1d: np.ndarray
    loss2d: np.ndarray  # (G, G): [i, j] is α = coords[i], β = coords[j]
    acc2d: np.ndarray
    seconds: float = 0.0  # evaluation time so far, over every session of a resumed grid

    @classmethod
    def empty(cls, points: int, span: float) -> Grid:
        coords = np.linspace(-span, span, points)
        nan1, nan2 = np.full(points, np.nan), np.full((points, points), np.nan)
        return cls(coords, nan1.copy(), nan1.copy(), nan2.copy(), nan2.copy())

    @property
    def done(self) -> bool:
        return bool(np.isfinite(self.loss1d).all() and np.isfinite(self.loss2d).all())

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez(
            buf,
            coords=self.coords,
            loss1d=self.loss1d,
            acc1d=self.acc1d,
            loss2d=self.loss2d,
            acc2d=self.acc2d,
            seconds=self.seconds,
        )
        write_bytes_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path, points: int, span: float) -> Grid:
        """The partial grid saved at ``path`` if it has the same points and span, else a
        fresh one."""
        fresh = cls.empty(points, span)
        if not path.is_file():
            return fresh
        try:
            with np.load(path) as z:
                a = {k: np.array(z[k]) for k in ("coords", "loss1d", "acc1d", "loss2d", "acc2d")}
                seconds = float(z["seconds"]) if "seconds" in z.files else 0.0
            grid = cls(a["coords"], a["loss1d"], a["acc1d"], a["loss2d"], a["acc2d"], seconds)
        except (OSError, ValueError, KeyError):
            return fresh
        same = grid.coords.shape == fresh.coords.shape and np.allclose(grid.coords, fresh.coords)
        return grid if same else fresh

    def write_csv(self, path: Path) -> None:
        lines = ["kind,alpha,beta,loss,accuracy"]
        for i, a in enumerate(self.coords):
            lines.append(f"1d,{a:.6g},0,{self.loss1d[i]:.6g},{self.acc1d[i]:.4f}")
        for i, a in enumerate(self.coords):
            for j, b in enumerate(self.coords):
                lines.append(f"2d,{a:.6g},{b:.6g},{self.loss2d[i, j]:.6g},{self.acc2d[i, j]:.4f}")
        write_text_atomic(path, "\n".join(lines) + "\n")


def surface(
    model: nn.Module,
    batches: list[tuple[Tensor, Tensor]],
    place: Execution,
    *,
    points: int,
    span: float,
    seed: int,
    save_to: Path,
) -> Grid:
    """Fill (or finish) the grid saved at ``save_to``: the directions come from ``seed``, so
    a resumed grid continues along the same ones. Saved after every row."""
    gen = torch.Generator().manual_seed(seed)
    delta = filter_normalized_direction(model, gen)
    eta = filter_normalized_direction(model, gen)
    base = [p.detach().clone() for p in model.parameters()]
    grid = Grid.load(save_to, points, span)
    clock = time.monotonic()

    def save() -> None:
        nonlocal clock
        now = time.monotonic()
        grid.seconds += now - clock
        clock = now
        grid.save(save_to)

    try:
        for i, a in enumerate(grid.coords):
            if math.isnan(grid.loss1d[i]):
                set_weights(model, base, [(float(a), delta)])
                grid.loss1d[i], grid.acc1d[i] = loss_and_accuracy(model, batches, place)
        save()
        start, rows_done = time.monotonic(), 0
        for i, a in enumerate(grid.coords):
            if np.isfinite(grid.loss2d[i]).all():
                continue
            for j, b in enumerate(grid.coords):
                if math.isnan(grid.loss2d[i, j]):
                    set_weights(model, base, [(float(a), delta), (float(b), eta)])
                    grid.loss2d[i, j], grid.acc2d[i, j] = loss_and_accuracy(model, batches, place)
            save()
            rows_done += 1
            left = int(np.isnan(grid.loss2d).any(axis=1).sum())
            per_row = (time.monotonic() - start) / rows_done
            log.info(f"  row {i + 1}/{points} done; about {left * per_row / 60:.1f} min left")
    finally:
        set_weights(model, base, [])
    return grid


def inner(grid: Grid) -> np.ndarray:
    """The 2-D losses at the points with |α|, |β| ≤ half the span, flattened."""
    half = float(np.abs(grid.coords).max()) / 2 + 1e-9
    near = np.abs(grid.coords) <= half
    values: np.ndarray = grid.loss2d[np.ix_(near, near)].ravel()
    return values


def local_minima(values: np.ndarray) -> int:
    """How many interior grid points are lower than all eight neighbours: a smooth bowl has
    one, a chaotic surface many."""
    g = values
    count = 0
    for i in range(1, g.shape[0] - 1):
        for j in range(1, g.shape[1] - 1):
            window = g[i - 1 : i + 2, j - 1 : j + 2].copy()
            centre = window[1, 1]
            window[1, 1] = np.inf
            count += bool(centre < window.min())
    return count
