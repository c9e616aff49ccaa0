"""Training-curve charts from per-epoch rows (loss, top-1 accuracy, learning rate).

Charts are written atomically (a temporary file beside the target, then a rename) and select
matplotlib's headless Agg backend only when called, so importing this module has no side effects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from resnetlab.fileio import check_writable, pyplot, save_figure
from resnetlab.train.logs import row_number

__all__ = ["plot_curves"]


def plot_curves(
    rows: Sequence[Mapping[str, float | int | str]],
    path: Path,
    *,
    title: str = "",
) -> None:
    """Write a PNG of training curves from per-epoch rows: loss (train, val), top-1 accuracy
    in % (train, val) and learning rate (log scale), against ``epoch`` (or the row number).
    Keys that are absent are skipped; a panel with no data says so. Written atomically."""
    out = check_writable(path)
    xs = [row_number(r, "epoch") for r in rows]
    epochs = [x if x is not None else float(i + 1) for i, x in enumerate(xs)]

    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [
            (e, v)
            for e, r in zip(epochs, rows, strict=True)
            if (v := row_number(r, key)) is not None
        ]
        return [p[0] for p in pts], [p[1] for p in pts]

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    try:
        panels = (
            ("loss", "loss", ("train_loss", "val_loss")),
            ("top-1 accuracy", "top-1 accuracy (%)", ("train_top1", "val_top1")),
            ("learning rate", "learning rate", ("lr",)),
        )
        for ax, (name, ylabel, keys) in zip(axes, panels, strict=True):
            drawn = False
            for key in keys:
                x, y = series(key)
                if not x:
                    continue
                label = key.split("_")[0] if key != "lr" else "lr"
                if key == "val_top1":
                    label += f" (best {max(y):.2f}%)"
                ax.plot(x, y, "-" if len(x) > 1 else "o", label=label)
                drawn = True
                if key == "lr" and all(v > 0 for v in y):  # log scale cannot show 0
                    ax.set_yscale("log")
            if drawn:
                ax.legend()
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 2.5" ticks
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        save_figure(fig, out, dpi=110)
    finally:
        plt.close(fig)
