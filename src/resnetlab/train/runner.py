"""``fit(config)``: a whole training run, from data to report.

The run folder holds ``config.yaml``, ``last.pt`` (every epoch, and on interruption),
``best.pt`` (best validation top-1), ``metrics.csv``/``metrics.jsonl``, ``curves.png``
and, after the one evaluation on the test split, ``results.json``, ``confusion.png`` and
``report.md``. ``fit(..., resume=path)`` continues a run exactly where it stopped.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import nn

from resnetlab.data.augment import Preprocess
from resnetlab.data.datasets import DataBundle, eval_split_batches, load_data, train_batches
from resnetlab.models.registry import create_model
from resnetlab.models.resnet import ResNet
from resnetlab.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from resnetlab.train.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    plain,
    save_config,
)
from resnetlab.train.device import Placement, choose, hardware
from resnetlab.train.loop import EpochState, evaluate, train_one_epoch
from resnetlab.train.metrics import (
    ConfusionMatrix,
    MetricsLogger,
    ProgressBar,
    format_epoch,
    plot_curves,
)
from resnetlab.train.optim import LRSchedule, build_optimizer

Log = Callable[[str], None]
EXIT_CODES = {
    "completed": 0,
    "time": 0,
    "iterations": 0,
    "early_stop": 0,
    "sigterm": 0,
    "sigint": 130,
    "nan": 3,
}


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: str  # completed | time | iterations | early_stop | sigterm | sigint | nan
    epochs_done: int
    best_val_top1: float
    test: dict[str, float] | None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)


class _Signals:
    """SIGINT/SIGTERM set a flag the loop checks after each step; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.received = ""

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.received == "sigint" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = "sigterm" if signum == signal.SIGTERM else "sigint"

    @contextmanager
    def installed(self) -> Iterator[None]:
        try:
            old = {s: signal.signal(s, self.handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: no handlers, the run just cannot be paused
            yield
            return
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def build_model(cfg: TrainConfig, num_classes: int, in_channels: int, log: Log) -> nn.Module:
    options = {**cfg.model.options, "num_classes": num_classes, "in_channels": in_channels}
    model = create_model(cfg.model.name, **options)
    if cfg.model.pretrained:
        _load_pretrained(model, cfg.model.pretrained, log)
    if cfg.model.freeze_backbone:
        head = model.fc if isinstance(model, ResNet) else getattr(model, "classifier", None)
        if head is None:
            raise ValueError(f"{cfg.model.name} has no head to train alone")
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
    return model


def _load_pretrained(model: nn.Module, path: str, log: Log) -> None:
    from resnetlab.models.compat import read_state_dict

    try:
        state = load_checkpoint(path)["model"]
    except CheckpointError:
        state = read_state_dict(path)  # a torchvision/timm weights file
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(usable))
    if len(usable) < len(own) // 2:
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__}: only "
            f"{len(usable)} of {len(own)} tensors match"
        )
    model.load_state_dict(usable, strict=False)
    log(
        f"initialised from {path}: {len(usable)} tensors loaded, {len(skipped)} kept fresh "
        f"({', '.join(skipped[:4])}{'…' if len(skipped) > 4 else ''})"
    )


def _data(cfg: TrainConfig, log: Log) -> DataBundle:
    d = cfg.data
    bundle = load_data(
        d.source,
        root=d.root,
        download=d.download,
        val_fraction=d.val_fraction,
        seed=cfg.run.seed,
        load_size=d.load_size,
        on_error=d.on_error,
        cache=d.cache,
        in_memory=d.in_memory,
        limit=d.limit_per_class,
        progress=log,
    )
    for name, reason in bundle.skipped[:20]:
        log(f"skipped {name}: {reason}")
    if len(bundle.skipped) > 20:
        log(f"… and {len(bundle.skipped) - 20} more skipped files")
    return bundle


def preprocess_for(cfg: TrainConfig, bundle: DataBundle) -> Preprocess:
    side = bundle.train.image_size[1]
    return Preprocess(
        mean=bundle.mean,
        std=bundle.std,
        image_size=cfg.data.image_size or side,
        augment=cfg.data.augment,
        padding=cfg.data.padding,
    )


def _run_dir(cfg: TrainConfig) -> Path:
    name = cfg.run.name or (
        f"{cfg.model.name}-{cfg.recipe}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    return Path(cfg.run.out_dir).expanduser() / name


def _best_value(metrics: dict[str, float], key: str) -> float:
    return -metrics[key] if key == "val_loss" else metrics[key]


def fit(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    log: Log = print,
    command: str | None = None,
) -> RunResult:
    """Train ``cfg`` (or continue the run saved at ``resume``) and return where it ended.

    ``command`` (the command line that started the run) is recorded in the report.
    """
    state: dict[str, Any] | None = None
    ckpt_path = Path()
    if resume is not None:
        ckpt_path = checkpoint_file(resume)
        state = load_checkpoint(ckpt_path)
        saved = config_from_dict(state["config"])
        # Only the run section (length, device) may differ: anything else would not be the
        # same run continued.
        for section in ("model", "data", "optim", "schedule"):
            if getattr(saved, section) != getattr(cfg, section):
                raise ConfigError(
                    f"cannot resume {ckpt_path} with a different {section} "
                    "config; only run settings (epochs, time limit) may change"
                )
    torch.manual_seed(cfg.run.seed)
    place = choose(cfg.run.device, cfg.run.precision, cfg.run.channels_last)
    bundle = _data(cfg, log)
    pre = preprocess_for(cfg, bundle)
    model = build_model(cfg, len(bundle.classes), bundle.train.image_size[0], log)
    if place.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.to(place.device)
    # A resumed run continues in the folder its checkpoint lives in (wherever it was moved).
    run_dir = ckpt_path.parent if state is not None else _run_dir(cfg)
    if state is None and (run_dir / "last.pt").exists():
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir} "
            "or choose another --name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim, device=place.device)
    steps_per_epoch = len(bundle.train) // cfg.data.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch size {cfg.data.batch_size} is larger than the "
            f"{len(bundle.train)} training images"
        )
    planned = [
        v
        for v in (cfg.run.iterations, cfg.run.epochs * steps_per_epoch if cfg.run.epochs else None)
        if v
    ]
    total_steps = min(planned) if planned else 10**12
    max_epochs = -(-total_steps // steps_per_epoch)
    depth = model.spec.depth if isinstance(model, ResNet) else 0
    schedule = LRSchedule(
        optimizer,
        cfg.schedule,
        base_lr=cfg.optim.lr,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        model_depth=depth,
    )
    scaler = torch.amp.GradScaler("cuda") if place.autocast is torch.float16 else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)

    epoch, step, best, bad_epochs = 0, 0, float("-inf"), 0
    best_top1 = 0.0
    partial = EpochState.fresh(place.device)
    gen_state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        epoch, step = int(state["epoch"]), int(state["step"])
        best, bad_epochs = float(state["best"]), int(state["bad_epochs"])
        best_top1 = float(state["best_val_top1"])
        if state.get("partial") is not None:
            p = state["partial"]
            partial = EpochState(
                p["loss_sum"].to(place.device),
                p["correct"].to(place.device),
                int(p["seen"]),
                int(p["batches_done"]),
                float(p["seconds"]),
            )
            gen_state = p["generator"]
        log(f"resuming {run_dir} at epoch {epoch + 1}, step {step}")

    def snapshot(partial_state: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
            "epoch": epoch,
            "step": step,
            "best": best,
            "bad_epochs": bad_epochs,
            "best_val_top1": best_top1,
            "partial": partial_state,
            "config": cfg.to_dict(),
            "classes": list(bundle.classes),
            "preprocess": plain(asdict(pre)),
            "data_size": list(bundle.train.image_size),
            "model_name": cfg.model.name,
            "elapsed_s": time.monotonic() - started,
        }

    log(
        f"run {run_dir}: {cfg.model.name} on {bundle.source}; train {len(bundle.train):,}, "
        f"val {len(bundle.val):,} ({bundle.val_note}), test "
        f"{len(bundle.test) if bundle.test is not None else 0:,}; {place.device} "
        f"{place.precision}{' channels_last' if place.channels_last else ''}; "
        f"{steps_per_epoch} steps/epoch, up to {max_epochs} epochs"
    )
    signals = _Signals()
    spent_before = float(state.get("elapsed_s", 0.0)) if state is not None else 0.0
    started = time.monotonic() - spent_before  # wall time counts every session of the run
    limit_s = cfg.run.time_limit_min * 60 if cfg.run.time_limit_min else None
    status = "completed"

    def should_stop() -> str:
        if signals.received:
            return signals.received
        if limit_s is not None and time.monotonic() - started > limit_s:
            return "time"
        return ""

    with signals.installed(), MetricsLogger(run_dir) as logger:
        while epoch < max_epochs:
            batches = train_batches(
                bundle.train,
                pre,
                batch_size=cfg.data.batch_size,
                seed=cfg.run.seed,
                epoch=epoch,
                device=place.device,
                start_batch=partial.batches_done,
                generator_state=gen_state,
            )
            bar = ProgressBar(len(batches) + partial.batches_done, desc=f"epoch {epoch + 1}")
            bar.update(partial.batches_done)
            out = train_one_epoch(
                model,
                batches,
                optimizer=optimizer,
                schedule=schedule,
                loss_fn=loss_fn,
                place=place,
                state=partial,
                step=step,
                total_batches=steps_per_epoch,
                max_steps=total_steps,
                should_stop=should_stop,
                log_every=cfg.run.log_every,
                scaler=scaler,
                progress=bar,
            )
            bar.close()
            if out.stopped == "nan":
                log(
                    f"stopped: the training loss became NaN/inf in epoch {epoch + 1} (near step "
                    f"{out.step}); the last good checkpoint is {run_dir / 'last.pt'} "
                    "(try a lower learning rate)"
                )
                status = "nan"
                break
            step = out.step
            epoch_finished = partial.batches_done >= steps_per_epoch
            if out.stopped in ("sigint", "sigterm") or (
                out.stopped == "time" and not epoch_finished
            ):
                paused = snapshot(
                    {
                        "loss_sum": partial.loss_sum.cpu(),
                        "correct": partial.correct.cpu(),
                        "seen": partial.seen,
                        "batches_done": partial.batches_done,
                        "seconds": partial.seconds,
                        "generator": batches.generator_state(),
                    }
                )
                save_checkpoint(paused, run_dir / "last.pt")
                log(
                    f"{out.stopped}: saved {run_dir / 'last.pt'} at epoch {epoch + 1}, batch "
                    f"{partial.batches_done}/{steps_per_epoch}; continue with "
                    f"`resnetlab train --resume {run_dir}`"
                )
                status = out.stopped
                break
            val = evaluate(
                model,
                eval_split_batches(
                    bundle.val, pre, batch_size=cfg.data.eval_batch_size, device=place.device
                ),
                place=place,
                num_classes=len(bundle.classes),
                loss_fn=loss_fn,
            )
            epoch += 1
            row: dict[str, float | int | str] = {
                "epoch": epoch,
                "epochs": max_epochs,
                "step": step,
                **out.metrics,
                "val_loss": val["loss"],
                "val_top1": val["top1"],
                "val_top5": val["top5"],
                "epoch_time_s": out.metrics["train_time_s"],
            }
            logger.log(row)
            log(format_epoch(row))
            schedule.epoch_end({"val_loss": val["loss"], "val_top1": val["top1"]})
            value = _best_value(
                {"val_loss": val["loss"], "val_top1": val["top1"]}, cfg.run.early_stopping_metric
            )
            improved_top1 = val["top1"] > best_top1
            if value > best:
                best, bad_epochs = value, 0
            else:
                bad_epochs += 1
            best_top1 = max(best_top1, val["top1"])
            partial = EpochState.fresh(place.device)
            gen_state = None
            snap = snapshot(None)
            save_checkpoint(snap, run_dir / "last.pt")
            if improved_top1:
                save_checkpoint(snap, run_dir / "best.pt")
            patience = cfg.run.early_stopping_patience
            if patience is not None and bad_epochs >= patience:
                log(
                    f"early stopping: no better {cfg.run.early_stopping_metric} "
                    f"for {patience} epochs"
                )
                status = "early_stop"
                break
            if out.stopped == "time":
                status = "time"
                break
            if out.stopped == "iterations":  # the planned number of steps: a finished run
                break
    rows = _read_rows(run_dir)
    if rows:
        plot_curves(rows, run_dir / "curves.png", title=f"{cfg.model.name}, {cfg.recipe} recipe")
    test = None
    if (
        status not in ("nan", "sigint", "sigterm")
        and cfg.run.test
        and bundle.test is not None
        and (run_dir / "best.pt").is_file()
    ):
        test = _final_test(model, bundle, pre, place, run_dir, cfg, log)
    _write_results(run_dir, cfg, bundle, place, status, epoch, best_top1, test, started, command)
    return RunResult(run_dir, status, epoch, best_top1, test)


def checkpoint_file(resume: str | Path) -> Path:
    """A run folder means its ``last.pt``."""
    path = Path(resume)
    return path / "last.pt" if path.is_dir() else path


def resume_config(resume: str | Path, run_overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of a run, with ``run.*`` overrides (``run.epochs=40``) applied."""
    saved = load_checkpoint(checkpoint_file(resume))["config"]
    bad = sorted(k for k in run_overrides if not k.startswith("run."))
    if bad:
        raise ConfigError(
            f"--resume continues a run as it was configured; {bad[0]} cannot change "
            "(only run settings such as --epochs and --time-limit)"
        )
    return config_from_dict(apply_overrides(saved, run_overrides))


def _read_rows(run_dir: Path) -> list[dict[str, float | str]]:
    from resnetlab.train.metrics import read_metrics

    return read_metrics(run_dir)


def _final_test(
    model: nn.Module,
    bundle: DataBundle,
    pre: Preprocess,
    place: Placement,
    run_dir: Path,
    cfg: TrainConfig,
    log: Log,
) -> dict[str, float]:
    """The one evaluation on the test split, with the best checkpoint (chosen on val), in
    fp32 whatever the training precision: the figure then equals ``resnetlab eval``'s."""
    place = Placement(place.device, None, channels_last=False)
    assert bundle.test is not None
    best = load_checkpoint(run_dir / "best.pt")
    model.load_state_dict(best["model"])
    cm = ConfusionMatrix(len(bundle.classes))
    test = evaluate(
        model,
        eval_split_batches(
            bundle.test, pre, batch_size=cfg.data.eval_batch_size, device=place.device
        ),
        place=place,
        num_classes=len(bundle.classes),
        confusion=cm,
    )
    cm.plot(run_dir / "confusion.png", bundle.classes, title="test split, best checkpoint")
    (run_dir / "confusion.txt").write_text(cm.to_text(bundle.classes))
    log(
        f"test (best checkpoint, epoch {best['epoch']}): top-1 {test['top1']:.2f}%, "
        f"top-5 {test['top5']:.2f}% on {len(bundle.test):,} images"
    )
    return {**test, "best_epoch": float(best["epoch"])}


def _write_results(
    run_dir: Path,
    cfg: TrainConfig,
    bundle: DataBundle,
    place: Placement,
    status: str,
    epochs: int,
    best_top1: float,
    test: dict[str, float] | None,
    started: float,
    command: str | None,
) -> None:
    from resnetlab import __version__

    results = {
        "status": status,
        "epochs": epochs,
        "best_val_top1": best_top1,
        "test": test,
        "wall_time_s": time.monotonic() - started,  # includes earlier sessions of a resumed run
        "model": cfg.model.name,
        "recipe": cfg.recipe,
        "data": bundle.source,
        "device": str(place.device),
        "precision": place.precision,
        "channels_last": place.channels_last,
        "hardware": hardware(),
        "resnetlab": __version__,
        "command": command,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# {cfg.model.name}, {cfg.recipe} recipe",
        "",
        f"- data: {bundle.source}; validation: {bundle.val_note}",
        f"- status: {status} after {epochs} epochs, {results['wall_time_s']:.0f} s wall",
        f"- device: {place.device}, {place.precision}; {results['hardware']}",
        f"- best validation top-1: {best_top1:.2f}%",
        f"- resnetlab {__version__}; command: `{command or 'library call: fit(config)'}`",
    ]
    if test is not None:
        lines.append(
            f"- test top-1 {test['top1']:.2f}%, top-5 {test['top5']:.2f}% "
            f"(best checkpoint, epoch {int(test['best_epoch'])}; test split used once)"
        )
    lines += ["", "![curves](curves.png)", ""]
    if test is not None:
        lines += ["![confusion](confusion.png)", ""]
    (run_dir / "report.md").write_text("\n".join(lines))
