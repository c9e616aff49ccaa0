"""The end of a run: the one evaluation on the test split, ``results.json`` and
``report.md``, with the command, data, hardware and wall time beside every number."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from torch import nn

from resnetlab.data.augment import Preprocess
from resnetlab.data.datasets import DataBundle, eval_split_batches
from resnetlab.fileio import json_text, write_text_atomic
from resnetlab.runtime.checkpoint import Checkpoint
from resnetlab.runtime.config import TrainConfig
from resnetlab.runtime.evaluate import evaluate
from resnetlab.runtime.execution import Execution, code_version, hardware
from resnetlab.runtime.folder_layout import RunFolder
from resnetlab.runtime.metrics import ConfusionMatrix, top5_shown

log = logging.getLogger(__name__)


def final_test(
    model: nn.Module,
    bundle: DataBundle,
    pre: Preprocess,
    place: Execution,
    run_dir: Path,
    cfg: TrainConfig,
) -> dict[str, float]:
    """The one evaluation on the test split, with the best checkpoint (chosen on val), in
    fp32 whatever the training precision, with the test-time views ``run.tta`` that selected
    it: the figure then equals ``resnetlab eval``'s."""
    place = Execution(place.device, None, channels_last=False)
    assert bundle.test is not None
    best = Checkpoint.load(RunFolder(run_dir).best)
    model.load_state_dict(best.model)
    cm = ConfusionMatrix(len(bundle.classes))
    test = evaluate(
        model,
        eval_split_batches(
            bundle.test, pre, batch_size=cfg.data.eval_batch_size, device=place.device
        ),
        place=place,
        confusion=cm,
        tta=cfg.run.tta,
    )
    cm.plot(run_dir / "confusion.png", bundle.classes, title="test split, best checkpoint")
    write_text_atomic(run_dir / "confusion.txt", cm.to_text(bundle.classes))
    log.info(
        f"test (best checkpoint, epoch {best.epoch}): top-1 {test['top1']:.2f}%, "
        f"{top5_text(test, len(bundle.classes))}on {len(bundle.test):,} images{tta_note(cfg)}"
    )
    return {**test, "best_epoch": float(best.epoch)}


def top5_text(test: dict[str, float], classes: int) -> str:
    """``top-5 x% `` where 5 < ``classes`` (else top-5 is always 100%: not shown)."""
    return f"top-5 {test['top5']:.2f}% " if top5_shown(classes) else ""


def tta_note(cfg: TrainConfig) -> str:
    """How the evaluated figures were made, in words ("" for a single plain view)."""
    views = {"none": "", "flip": "flip", "flip-shift": "flip + 1-pixel shifts"}[cfg.run.tta]
    return f" (test-time augmentation: {views}, on val and test alike)" if views else ""


def write_results(
    run_dir: Path,
    cfg: TrainConfig,
    bundle: DataBundle,
    place: Execution,
    status: str,
    epochs: int,
    best_top1: float,
    test: dict[str, float] | None,
    started: float,
    command: str | None,
) -> None:
    from resnetlab.version import __version__

    results = {
        "status": status,
        "epochs": epochs,
        "best_val_top1": best_top1,
        "test": test,
        "wall_time_s": time.monotonic() - started,  # includes earlier sessions of a resumed run
        "model": cfg.model.name,
        "recipe": cfg.recipe,
        "tta": cfg.run.tta,  # the views of every validation and test figure
        "ema_decay": cfg.optim.ema_decay,  # > 0: the figures are the weight average's
        "data": bundle.source,
        "device": str(place.device),
        "precision": place.precision,
        "channels_last": place.channels_last,
        "hardware": hardware(),
        "resnetlab": __version__,
        "code": code_version(),  # with the git commit when trained from a checkout
        "command": command,
    }
    write_text_atomic(run_dir / "results.json", json_text(results) + "\n")
    lines = [
        f"# {cfg.model.name}, {cfg.recipe} recipe",
        "",
        f"- data: {bundle.source}; validation: {bundle.val_note}",
        f"- status: {status} after {epochs} epochs, {results['wall_time_s']:.0f} s wall",
        f"- device: {place.device}, {place.precision}; {results['hardware']}",
        f"- best validation top-1: {best_top1:.2f}%{tta_note(cfg)}"
        + (f"; weights: EMA, decay {cfg.optim.ema_decay:g}" if cfg.optim.ema_decay else ""),
        f"- resnetlab {__version__}; command: `{command or 'library call: fit(config)'}`",
    ]
    if test is not None:
        lines.append(
            f"- test top-1 {test['top1']:.2f}%, {top5_text(test, len(bundle.classes))}"
            f"(best checkpoint, epoch {int(test['best_epoch'])}; test split used once; "
            f"test-time augmentation: {cfg.run.tta})"
        )
    lines += ["", "![curves](curves.png)", ""]
    if test is not None:
        lines += ["![confusion](confusion.png)", ""]
    write_text_atomic(run_dir / "report.md", "\n".join(lines))
