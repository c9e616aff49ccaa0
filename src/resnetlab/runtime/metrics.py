"""Counting metrics: top-k hits and a confusion matrix, accumulated on the device.

Both count (integers, no averages), so sums over batches, epochs and ranks stay exact; the
callers turn them into percentages at the end.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor

from resnetlab.fileio import check_writable, pyplot, save_figure

__all__ = ["ConfusionMatrix", "top5_shown", "topk_correct"]


def top5_shown(classes: int) -> bool:
    """Whether top-5 tells anything: with 5 classes or fewer every sample's class is among
    its top 5, so it is always 100% and is not shown."""
    return classes > 5


def topk_correct(
    logits: Tensor, targets: Tensor, ks: tuple[int, ...] = (1, 5)
) -> dict[int, Tensor]:
    """Count the samples whose target is among the ``k`` highest logits, for each ``k``.

    ``logits``: ``(N, C)`` scores; ``targets``: ``(N,)`` class indices in ``[0, C)``. Returns
    ``{k: count}`` with each count a 0-dim int64 tensor on ``logits.device``; nothing is copied
    to the host, so a training loop can sum counts over an epoch without a sync per batch.
    A ``k`` above ``C`` is clamped to ``C`` (top-5 of a 3-class problem counts every sample).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(
            f"targets must be (N,) = ({logits.shape[0]},), got shape {tuple(targets.shape)}"
        )
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be at least 1, got {ks}")
    if not ks:
        return {}
    num_classes = logits.shape[1]
    maxk = min(max(ks), num_classes)
    # One topk for the largest k: the first k columns of it are the top-k for any smaller k.
    top = logits.topk(maxk, dim=1, largest=True, sorted=True).indices  # (N, maxk)
    hits = top == targets.view(-1, 1).to(top.dtype)  # (N, maxk), at most one True per row
    return {k: hits[:, : min(k, num_classes)].any(dim=1).sum(dtype=torch.int64) for k in ks}


class ConfusionMatrix:
    """Counts of (true class, predicted class) pairs: ``matrix[t, p]``, rows are true classes.

    Counts accumulate on the device of the first :meth:`update` (so evaluation on a GPU does
    not copy each batch to the host); :attr:`matrix` and the reports read a CPU copy.
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self._counts = torch.zeros(num_classes * num_classes, dtype=torch.int64)

    def update(self, preds: Tensor, targets: Tensor) -> None:
        """Add a batch. ``preds``: ``(N,)`` predicted class indices, or ``(N, C)`` logits (the
        argmax is taken); ``targets``: ``(N,)`` true class indices. Both in ``[0, C)``."""
        if preds.ndim == 2:
            preds = preds.argmax(dim=1)
        if preds.ndim != 1 or preds.shape != targets.shape:
            raise ValueError(
                f"preds (N,) or (N, C) and targets (N,) must agree, got "
                f"{tuple(preds.shape)} and {tuple(targets.shape)}"
            )
        c = self.num_classes
        p = preds.detach().to(torch.int64)
        t = targets.detach().to(device=p.device, dtype=torch.int64)
        # An out-of-range index would not fail: t*C + p lands in some other cell. bincount
        # has to sync to size its output anyway, so this check costs little extra.
        if bool(((p < 0) | (p >= c) | (t < 0) | (t >= c)).any()):
            raise ValueError(f"class indices must lie in [0, {c})")
        if self._counts.device != p.device:
            self._counts = self._counts.to(p.device)
        self._counts += torch.bincount(t * c + p, minlength=c * c)

    def reset(self) -> None:
        """Zero every count (keeps the device)."""
        self._counts.zero_()

    @property
    def matrix(self) -> Tensor:
        """``(C, C)`` int64 counts on the CPU; rows are true classes, columns predictions."""
        return self._counts.detach().cpu().view(self.num_classes, self.num_classes).clone()

    def per_class_accuracy(self) -> list[float]:
        """Fraction (0–1) of each true class predicted correctly (recall); ``nan`` for a
        class with no samples."""
        m = self.matrix
        support = m.sum(dim=1).tolist()
        correct = m.diagonal().tolist()
        return [cor / n if n else math.nan for cor, n in zip(correct, support, strict=True)]

    def accuracy(self) -> float:
        """Overall fraction (0–1) correct; ``nan`` before any sample is counted."""
        m = self.matrix
        total = int(m.sum())
        return int(m.diagonal().sum()) / total if total else math.nan

    def _names(self, class_names: Sequence[str] | None) -> list[str]:
        if class_names is None:
            return [str(i) for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names given for {self.num_classes} classes")
        return [str(n) for n in class_names]

    def to_text(self, class_names: Sequence[str] | None = None) -> str:
        """An aligned table: one row per true class, one column per predicted class, and a
        last column with the class's accuracy in %. Class indices label it when no names are
        given."""
        names = self._names(class_names)
        rows = self.matrix.tolist()
        accs = self.per_class_accuracy()
        corner = "true \\ pred"
        label_w = max(len(corner), *(len(n) for n in names))
        biggest = max((len(str(v)) for row in rows for v in row), default=1)
        col_ws = [max(len(n), biggest) for n in names]
        acc_head = "acc %"
        lines = [
            "  ".join(
                [corner.ljust(label_w)]
                + [n.rjust(w) for n, w in zip(names, col_ws, strict=True)]
                + [acc_head]
            )
        ]
        for name, row, acc in zip(names, rows, accs, strict=True):
            acc_s = "-" if math.isnan(acc) else f"{100 * acc:.1f}"
            lines.append(
                "  ".join(
                    [name.ljust(label_w)]
                    + [str(v).rjust(w) for v, w in zip(row, col_ws, strict=True)]
                    + [acc_s.rjust(len(acc_head))]
                )
            )
        total = self.accuracy()
        overall = "-" if math.isnan(total) else f"{100 * total:.2f}%"
        lines.append(f"overall accuracy {overall} of {int(self.matrix.sum())} samples")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """In a notebook: :meth:`to_text` as a preformatted block (escaped)."""
        return f"<pre>{html.escape(self.to_text())}</pre>"

    def plot(
        self,
        path: str | os.PathLike[str],
        class_names: Sequence[str] | None = None,
        *,
        title: str = "",
    ) -> None:
        """Write a PNG heatmap. Colour is the row-normalised fraction (so rare classes are as
        visible as common ones); cells show raw counts while the grid is small enough to read
        (up to 30 classes). Written atomically."""
        out = check_writable(path)
        names = self._names(class_names)
        m = self.matrix
        c = self.num_classes
        support = m.sum(dim=1, keepdim=True).clamp(min=1)
        frac = (m.double() / support).numpy()
        plt = pyplot()
        side = min(max(4.0, 0.45 * c + 2.0), 20.0)
        fig, ax = plt.subplots(figsize=(side + 1.0, side))
        try:
            image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
            if c <= 50:  # beyond that the labels overlap into a black bar
                ax.set_xticks(range(c), labels=names, rotation=45, ha="right")
                ax.set_yticks(range(c), labels=names)
            if c <= 30:
                counts = m.tolist()
                for i in range(c):
                    for j in range(c):
                        ax.text(
                            j,
                            i,
                            str(counts[i][j]),
                            ha="center",
                            va="center",
                            fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black",
                        )
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            acc = self.accuracy()
            subtitle = "accuracy -" if math.isnan(acc) else f"accuracy {100 * acc:.2f}%"
            ax.set_title(f"{title}\n{subtitle}" if title else subtitle)
            save_figure(fig, out, dpi=110)
        finally:
            plt.close(fig)
