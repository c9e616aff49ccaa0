"""The analysis tour: what the README's first command shows a newcomer.

1. ResNet-50's layer table for a (2, 3, 224, 224) input, as torchinfo prints it
   (25,557,032 parameters, 7.72 G mult-adds with the paper's stride placement).
2. The parameter counts behind ResNet's efficiency (VGG's first layers against ResNet's
   stem, a plain block against bottlenecks), with the formula behind every count.
3. Plain against residual, and the paper's stride placement against torchvision's.
4. Charts of ResNet-50's cost per stage and of cost against depth.
"""

from __future__ import annotations

from pathlib import Path

import torch

from resnetlab.analysis import efficiency
from resnetlab.analysis.charts import plot_depth_sweep, plot_stages
from resnetlab.analysis.compare import compare
from resnetlab.analysis.summary import summarize
from resnetlab.fileio import check_folder
from resnetlab.models.registry import create_model

CIFAR_MODELS = ("plain20", "resnet20", "plain56", "resnet56", "resnet110", "resnet1202")
SWEEP_MODELS = (
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet1202",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "preact_resnet164",
    "preact_resnet1001",
)


def tour(out_dir: Path | None = None) -> tuple[str, list[Path]]:
    """Return the tour's text and the chart files written to ``out_dir`` (if given)."""
    if out_dir is not None:
        check_folder(out_dir)  # before the seconds of work, not when the first chart is due
    with torch.device("meta"):  # shapes and counts only: no weights allocated
        resnet50 = create_model("resnet50")
    parts = [
        "1. ResNet-50 (paper placement), input 2×3×224×224: compare with torchinfo's table",
        summarize(resnet50, (2, 3, 224, 224), depth=2, title="resnet50").to_text(),
        "2. The parameter counts behind ResNet's efficiency",
        compare(*efficiency.first_layers(), title="First layers: VGG vs ResNet").render(
            formulas=True, notes=False
        ),
        compare(*efficiency.blocks(), title="Blocks: plain vs bottleneck").render(
            formulas=True, notes=False
        ),
        "3. Plain vs residual (same layers, shortcuts only add option-B projections), and "
        "where a bottleneck puts its stride",
        compare("plain18", "resnet18", "plain34", "resnet34", title="Plain vs residual").render(
            notes=False
        ),
        compare("resnet50", "resnet50_v1_5", title="Stride placement: paper (v1) vs v1.5").render(
            notes=False
        ),
        compare(*CIFAR_MODELS, title="CIFAR-10 nets (paper §4.2), one 32×32 image").render(),
    ]
    charts: list[Path] = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stages = out_dir / "resnet50_stages.png"
        plot_stages(resnet50, (1, 3, 224, 224), stages, title="ResNet-50 (paper placement)")
        sweep = out_dir / "depth_sweep.png"
        plot_depth_sweep(SWEEP_MODELS, sweep)
        charts += [stages, sweep]
    return "\n".join(parts), charts
