"""``fit(config)``: a whole training run, from data to report.

The run folder holds ``config.yaml``, ``last.pt`` (every epoch, and on interruption),
``best.pt`` (best validation top-1), ``metrics.csv``/``metrics.jsonl``, ``curves.png``
and, after the one evaluation on the test split, ``results.json``, ``confusion.png`` and
``report.md``. ``fit(..., resume=path)`` continues a run exactly where it stopped.

Under ``torchrun`` the same ``fit`` runs in every process (see
:mod:`resnetlab.train.distributed`): each trains on its share of every global batch, and
rank 0 alone writes the run folder, logs and draws the progress bar.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import yaml
from torch import nn

from resnetlab.analysis.counting import check_memory
from resnetlab.data.augment import Preprocess, split_augment
from resnetlab.data.datasets import (
    SMALL_SIDE,
    DataBundle,
    eval_split_batches,
    load_data,
    on_device,
    train_batches,
)
from resnetlab.fileio import folder_lock
from resnetlab.models.registry import create_model
from resnetlab.models.resnet import ResNet
from resnetlab.models.weights import PublishedWeights
from resnetlab.train.checkpoint import (
    CheckpointError,
    CheckpointSaveError,
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
from resnetlab.train.device import choose
from resnetlab.train.distributed import Group, scaled_lr, session, sync_batchnorm
from resnetlab.train.loop import EpochOutcome, EpochState, evaluate, train_one_epoch
from resnetlab.train.metrics import (
    CSV_NAME,
    JSONL_NAME,
    STEPS_NAME,
    MetricsLogger,
    ProgressBar,
    StepLog,
    format_epoch,
    plot_curves,
    read_metrics,
    truncate_metrics,
)
from resnetlab.train.optim import LRSchedule, build_ema, build_optimizer
from resnetlab.train.report import final_test, write_results

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


class _Stopped(BaseException):  # not caught by a broad `except Exception` on the way
    """A signal during the final test evaluation, which has no step to check a flag at."""


class _Signals:
    """SIGINT/SIGTERM set a flag the loop checks after each step; a second Ctrl-C aborts.
    Inside :meth:`raising` (the final test) a signal raises :class:`_Stopped` instead."""

    def __init__(self) -> None:
        self.received = ""
        self.raise_now = False

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.received == "sigint" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = "sigterm" if signum == signal.SIGTERM else "sigint"
        if self.raise_now:
            raise _Stopped(self.received)

    @contextmanager
    def raising(self) -> Iterator[None]:
        self.raise_now = True
        try:
            yield
        finally:
            self.raise_now = False

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
        head = head_module(model, cfg.model.name)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
    if cfg.model.freeze_until is not None:
        freeze_until(model, cfg.model.freeze_until, cfg.model.name)
    return model


def head_module(model: nn.Module, name: str) -> nn.Module:
    """The classifier a fine-tuning run trains afresh (ResNet's ``fc``, VGG's ``classifier``)."""
    head = model.fc if isinstance(model, ResNet) else getattr(model, "classifier", None)
    if not isinstance(head, nn.Module):
        raise ValueError(f"{name} has no head to train alone")
    return head


def backbone_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """Every parameter outside the head (those ``optim.backbone_lr_scale`` slows)."""
    head = {id(p) for p in head_module(model, name).parameters()}
    return [p for p in model.parameters() if id(p) not in head]


def freeze_until(model: nn.Module, stage: str, name: str) -> None:
    """Freeze the stem and every stage up to ``stage`` (``"stem"``, ``"layer1"``, …): no
    gradients for their weights, and (in ``train_one_epoch``) their BN layers in eval mode,
    so the frozen part computes exactly what it computed when pretrained."""
    if not isinstance(model, ResNet):
        raise ValueError(f"model.freeze_until needs a ResNet's stages; {name} has none")
    parts = ("stem", *model.stage_names)
    if stage not in parts:
        raise ValueError(f"model.freeze_until {stage!r}: {name} has {', '.join(parts)}")
    frozen: list[nn.Module | None] = [model.conv1, model.bn1]
    frozen += model.stages()[: parts.index(stage)]
    for module in frozen:
        if module is not None:
            module.requires_grad_(False)


def _load_pretrained(model: nn.Module, path: str, log: Log) -> None:
    from resnetlab.models.compat import from_akamaster, read_state_dict
    from resnetlab.models.published import resolve

    try:
        state = load_checkpoint(path)["model"]
    except CheckpointError:
        file, entry = resolve(path)  # a catalogue name is downloaded (hash-checked) here
        if entry is not None:
            log(f"{path}: published weights {entry.name} ({entry.layout} layout)")
        state = read_state_dict(file)  # a torchvision/timm/akamaster weights file
        if "linear.weight" in state and "fc.weight" not in state and isinstance(model, ResNet):
            # Renaming alone would load strictly and compute something else: akamaster's
            # option-A shortcut orders the residual channels differently (models.compat).
            state = from_akamaster(state)
            log(f"{path}: akamaster's CIFAR layout (linear → fc, residual channels reordered)")
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


def load_run_data(cfg: TrainConfig, log: Log) -> DataBundle:
    """The data a config names, with its validation split and statistics; skipped files
    are logged."""
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


def resolve_pipeline(cfg: TrainConfig) -> tuple[TrainConfig, str]:
    """``data.augment: auto`` → the pipeline the data's first image calls for (photos: the
    ImageNet one, with the stored and input sizes; small images: pad-and-crop), written
    into the config so the run's config.yaml and checkpoints say what was done."""
    d = cfg.data
    if d.augment != "auto":
        return cfg, ""
    from resnetlab.data.datasets import choose_pipeline

    p = choose_pipeline(d.source, image_size=d.image_size, load_size=d.load_size)
    data = replace(d, augment=p.augment, image_size=p.image_size, load_size=p.load_size)
    return replace(cfg, data=data), p.describe()


def pretrained_weights(cfg: TrainConfig) -> PublishedWeights | None:
    """The catalogue entry of ``model.pretrained`` (a name, or a file known by its hash)."""
    from resnetlab.models.published import is_weights_name, resolve

    source = cfg.model.pretrained
    if not source or not (is_weights_name(source) or Path(source).is_file()):
        return None
    try:
        return resolve(source)[1]
    except CheckpointError:
        return None  # loading the weights reports the problem, in one line


def preprocess_for(cfg: TrainConfig, bundle: DataBundle) -> Preprocess:
    """The run's preprocessing. Fine-tuning from published weights keeps the mean/std they
    were trained with (the features expect them); otherwise the training split's own."""
    d, side = cfg.data, bundle.train.image_size[1]
    w = pretrained_weights(cfg)
    mean, std = (w.preprocessing.mean, w.preprocessing.std) if w else (bundle.mean, bundle.std)
    # "auto" here only when the caller did not resolve it (fit does): go by the size.
    augment = d.augment if d.augment != "auto" else ("imagenet" if side > SMALL_SIDE else "cifar")
    base, policy = split_augment(augment, side, d.image_size or side)
    if d.padding > (d.image_size or side):  # pad-and-crop by more than the image: no image
        raise ConfigError(
            f"data.padding {d.padding} is larger than the {d.image_size or side}-pixel images"
        )
    return Preprocess(
        mean=mean,
        std=std,
        image_size=d.image_size or side,
        augment=base,
        padding=d.padding,
        policy=policy,
        random_erasing=d.random_erasing,
        mixup_alpha=d.mixup_alpha,
        cutmix_alpha=d.cutmix_alpha,
        mix_switch_prob=d.mix_switch_prob,
    )


def _run_dir(cfg: TrainConfig) -> Path:
    name = cfg.run.name or (
        f"{cfg.model.name}-{cfg.recipe}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    return Path(cfg.run.out_dir).expanduser() / name


def _best_value(metrics: dict[str, float], key: str) -> float:
    return -metrics[key] if key == "val_loss" else metrics[key]


@dataclass
class _Position:
    """Where a run is: what a checkpoint must hold to continue exactly."""

    epoch: int = 0
    step: int = 0
    best: float = float("-inf")  # best early-stopping value so far (higher is better)
    bad_epochs: int = 0
    best_top1: float = 0.0
    partial: EpochState | None = None  # the interrupted epoch's running sums
    generator: torch.Tensor | None = None  # its augmentation generator state


class _Run:
    """Everything one run needs, built once; each step of ``fit`` is a method."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, log: Log, group: Group) -> None:
        self.cfg, self.run_dir, self.log, self.group = cfg, run_dir, log, group
        torch.manual_seed(cfg.run.seed)
        place = choose(cfg.run.device, cfg.run.precision, cfg.run.channels_last)
        self.place = replace(place, device=group.device(place.device))
        # Rank 0 decodes (and caches) the data first; the others then read its cache rather
        # than race it to write the same files.
        if not group.is_main:
            group.barrier()
        self.bundle = load_run_data(cfg, log)
        if group.is_main:
            group.barrier()
        if self.place.device.type == "cuda":  # keep small datasets resident on the GPU
            self.bundle = on_device(self.bundle, self.place.device)
        self.val = group.shard(self.bundle.val)  # validation is sharded, its sums all-reduced
        self.pre = preprocess_for(cfg, self.bundle)
        model = build_model(cfg, len(self.bundle.classes), self.bundle.train.image_size[0], log)
        if cfg.run.sync_bn and group.size > 1:
            model = sync_batchnorm(model, self.place.device)
        if self.place.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model.to(self.place.device)
        self.net = group.wrap(self.model, self.place.device)  # what trains (DDP under torchrun)
        if cfg.run.compile:  # the training forward/backward only; checkpoints hold self.model's
            log(
                f"torch.compile (mode {cfg.run.compile_mode}): the first steps (and a last, "
                "smaller batch) build the graph"
            )
            self.net = torch.compile(self.net, mode=cfg.run.compile_mode)  # type: ignore[assignment]
        if group.rank > 0:  # dropout draws its own numbers on every rank
            torch.manual_seed(cfg.run.seed + 1_000_003 * group.rank)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.global_batch = cfg.data.batch_size * group.size
        self.lr = scaled_lr(cfg.optim.lr, batch_size=cfg.data.batch_size, world_size=group.size,
                            reference=cfg.optim.reference_batch,
                            enabled=cfg.run.scale_lr)  # fmt: skip
        if self.lr != cfg.optim.lr:
            log(f"linear scaling rule: lr {cfg.optim.lr:g} × global batch {self.global_batch} / "
                f"reference {cfg.optim.reference_batch} = {self.lr:g}")  # fmt: skip
        backbone = None
        if cfg.model.pretrained and cfg.optim.backbone_lr_scale != 1.0:
            backbone = backbone_parameters(self.model, cfg.model.name)
            log(
                f"discriminative lr: the pretrained backbone at lr × "
                f"{cfg.optim.backbone_lr_scale:g}, the head at lr"
            )
        self.optimizer = build_optimizer(params, replace(cfg.optim, lr=self.lr),
                                         device=self.place.device, backbone=backbone)  # fmt: skip
        # With optim.ema_decay the average is the model: validated, selected and saved.
        self.ema = build_ema(self.model, cfg.optim.ema_decay)
        self.steps_per_epoch = len(self.bundle.train) // self.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"batch size {self.global_batch} is larger than the "
                f"{len(self.bundle.train)} training images"
            )
        # Checked before the first batch is made at that size.
        side, channels = self.pre.image_size, self.bundle.train.image_size[0]
        step = (cfg.data.batch_size, channels, side, side)
        hint = "use a smaller --batch-size or --image-size"
        check_memory(self.model, step, training=True, device=self.place.device, hint=hint)
        # The run ends at the first of: the iteration budget, the epoch budget.
        planned = [cfg.run.iterations, (cfg.run.epochs or 0) * self.steps_per_epoch]
        self.total_steps = min([v for v in planned if v] or [10**12])
        self.max_epochs = -(-self.total_steps // self.steps_per_epoch)
        warm = cfg.schedule.warmup_lr  # the paper's 0.01 scales with the lr it precedes
        warm = None if warm is None else warm * self.lr / cfg.optim.lr
        self.schedule = LRSchedule(
            self.optimizer,
            replace(cfg.schedule, warmup_lr=warm),
            base_lr=self.lr,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            model_depth=self.model.spec.depth if isinstance(self.model, ResNet) else 0,
        )
        fp16 = self.place.autocast is torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)
        self.pos = _Position()
        self.started = time.monotonic()

    # ------------------------------------------------------------ checkpoints
    def restore(self, state: dict[str, Any]) -> None:
        world, g = int(state.get("world_size", 1)), self.group
        if world != g.size:
            raise ConfigError(f"{self.run_dir} was trained by {world} process(es): resume it "
                              f"with as many (the global batch and the position in the epoch "
                              f"depend on it), not {g.size}")  # fmt: skip
        if self.ema is not None:  # "model" holds the average, "train_model" what trains
            self.model.load_state_dict(state["train_model"])
            self.ema.module.load_state_dict(state["model"])
            self.ema.n_averaged.fill_(int(state["ema_updates"]))
        else:
            self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        mine = state["ranks"][g.rank] if g.size > 1 else None  # this rank's random streams
        set_rng_state(mine["rng"] if mine else state["rng"])
        pos = _Position(int(state["epoch"]), int(state["step"]), float(state["best"]),
                        int(state["bad_epochs"]), float(state["best_val_top1"]))  # fmt: skip
        if state.get("partial") is not None:
            p, dev = state["partial"], self.place.device
            pos.partial = EpochState(p["loss_sum"].to(dev), p["correct"].to(dev), int(p["seen"]),
                                     int(p["batches_done"]), float(p["seconds"]))  # fmt: skip
            if not g.is_main:  # the saved sums are global: rank 0 carries them on alone
                pos.partial.loss_sum.zero_()
                pos.partial.correct.zero_()
                pos.partial.seen = 0
            pos.generator = mine["generator"] if mine else p["generator"]
        self.pos = pos
        # Wall time and the time limit count every session of the run.
        self.started = time.monotonic() - float(state.get("elapsed_s", 0.0))
        self.log(f"resuming {self.run_dir} at epoch {pos.epoch + 1}, step {pos.step}")

    def snapshot(self, generator: torch.Tensor | None = None) -> dict[str, Any]:
        """The checkpoint of the current position (``generator``: paused mid-epoch). Under
        torchrun every rank calls it (the sums and per-rank RNG states are gathered); rank 0
        saves it."""
        pos, part, g = self.pos, self.pos.partial, self.group
        partial = None
        if generator is not None and part is not None:
            loss_sum, correct, seen = g.sum([part.loss_sum, part.correct, part.seen],
                                            device=self.place.device)  # fmt: skip
            partial = {"loss_sum": torch.tensor(loss_sum, dtype=torch.float64),
                       "correct": torch.tensor(int(correct)), "seen": int(seen),
                       "batches_done": part.batches_done, "seconds": part.seconds,
                       "generator": generator}  # fmt: skip
        ranks = None
        if g.size > 1:  # each rank's own random streams, to resume each exactly
            ranks = g.gather({"rng": rng_state(), "generator": generator})
        averaged: dict[str, Any] = {}
        if self.ema is not None:
            averaged = {
                "train_model": self.model.state_dict(),
                "ema_updates": int(self.ema.n_averaged),
            }
        return {
            "model": self.eval_model.state_dict(), **averaged,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_state(), "epoch": pos.epoch, "step": pos.step, "best": pos.best,
            "bad_epochs": pos.bad_epochs, "best_val_top1": pos.best_top1, "partial": partial,
            "config": self.cfg.to_dict(), "classes": list(self.bundle.classes),
            "preprocess": plain(asdict(self.pre)),
            "data_size": list(self.bundle.train.image_size), "model_name": self.cfg.model.name,
            "elapsed_s": time.monotonic() - self.started, "world_size": g.size, "ranks": ranks,
        }  # fmt: skip

    @property
    def eval_model(self) -> nn.Module:
        """What is validated, tested and saved as the model: the weight average if there is
        one, else the trained weights."""
        return self.model if self.ema is None else self.ema.module

    # ------------------------------------------------------------ one epoch
    def train_epoch(
        self, should_stop: Callable[[], str], steps: StepLog | None = None
    ) -> tuple[EpochOutcome, torch.Tensor]:
        """Train (the rest of) the current epoch; returns the outcome and the augmentation
        generator's state (to pause mid-epoch)."""
        pos, cfg = self.pos, self.cfg
        if pos.partial is None:
            pos.partial = EpochState.fresh(self.place.device)
        batches = train_batches(self.bundle.train, self.pre, batch_size=cfg.data.batch_size,
                                seed=cfg.run.seed, epoch=pos.epoch, device=self.place.device,
                                start_batch=pos.partial.batches_done,
                                generator_state=pos.generator, rank=self.group.rank,
                                world_size=self.group.size)  # fmt: skip
        bar = ProgressBar(self.steps_per_epoch, desc=f"epoch {pos.epoch + 1}",
                          enabled=None if self.group.is_main else False)  # fmt: skip
        bar.update(pos.partial.batches_done)
        epoch = pos.epoch + 1

        def on_log(step: int, loss: float, error: float) -> None:
            if steps is not None:
                steps.log(step, epoch, loss, error)

        out = train_one_epoch(self.net, batches, optimizer=self.optimizer,
                              schedule=self.schedule, loss_fn=self.loss_fn, place=self.place,
                              state=pos.partial, step=pos.step,
                              total_batches=self.steps_per_epoch, max_steps=self.total_steps,
                              should_stop=should_stop, log_every=cfg.run.log_every,
                              scaler=self.scaler, progress=bar, on_log=on_log,
                              group=self.group, ema=self.ema)  # fmt: skip
        bar.close()
        return out, batches.generator_state()

    def validate(self) -> dict[str, float]:
        """Every rank evaluates its shard of the validation split with rank 0's BN
        statistics (those the checkpoint keeps); the sums are all-reduced. Views:
        ``run.tta``, as in the final test."""
        self.group.share_buffers(self.eval_model)
        batches = eval_split_batches(self.val, self.pre, device=self.place.device,
                                     batch_size=self.cfg.data.eval_batch_size)  # fmt: skip
        return evaluate(self.eval_model, batches, place=self.place, loss_fn=self.loss_fn,
                        group=self.group, tta=self.cfg.run.tta)  # fmt: skip

    def save(self, snap: dict[str, Any], *names: str) -> None:
        """Rank 0 writes (``best.pt`` before ``last.pt``: if the second save fails, the run
        resumes before this epoch and saves both again); every rank learns whether it
        worked, so a failed save stops all of them."""
        failure: CheckpointSaveError | None = None
        if self.group.is_main:
            try:
                for name in sorted(names, key=lambda n: n != "best.pt"):
                    save_checkpoint(snap, self.run_dir / name)
            except CheckpointSaveError as err:
                failure = err
        message = self.group.broadcast(str(failure) if failure is not None else "")
        if failure is not None:
            raise failure
        if message:
            raise CheckpointSaveError(message)

    def close_epoch(
        self, out: EpochOutcome, val: dict[str, float], logger: MetricsLogger | None
    ) -> str:
        """Log the epoch, update the best/patience bookkeeping, save ``last.pt`` (and
        ``best.pt`` on a better validation top-1); returns "early_stop" or ""."""
        pos, cfg = self.pos, self.cfg
        pos.epoch += 1
        row: dict[str, float | int | str] = {
            "epoch": pos.epoch, "epochs": self.max_epochs, "step": pos.step, **out.metrics,
            "val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"],
            "epoch_time_s": out.metrics["train_time_s"],
        }  # fmt: skip
        if logger is not None:
            logger.log(row)
        self.log(format_epoch(row))
        watched = {"val_loss": val["loss"], "val_top1": val["top1"]}
        self.schedule.epoch_end(watched)
        value = _best_value(watched, cfg.run.early_stopping_metric)
        if value > pos.best:
            pos.best, pos.bad_epochs = value, 0
        else:
            pos.bad_epochs += 1
        improved = val["top1"] > pos.best_top1
        pos.best_top1 = max(pos.best_top1, val["top1"])
        pos.partial, pos.generator = None, None
        self.save(self.snapshot(), "last.pt", *(["best.pt"] if improved else []))
        patience = cfg.run.early_stopping_patience
        if patience is not None and pos.bad_epochs >= patience:
            self.log(f"early stopping: no better {cfg.run.early_stopping_metric} "
                     f"for {patience} epochs")  # fmt: skip
            return "early_stop"
        return ""

    def pause(self, reason: str, generator: torch.Tensor) -> None:
        """Save the position inside the current epoch (signal or time limit)."""
        self.save(self.snapshot(generator), "last.pt")
        done = self.pos.partial.batches_done if self.pos.partial is not None else 0
        self.log(f"{reason}: saved {self.run_dir / 'last.pt'} at epoch {self.pos.epoch + 1}, "
                 f"batch {done}/{self.steps_per_epoch}; continue with "
                 f"`resnetlab train --resume {self.run_dir}`")  # fmt: skip

    def describe(self) -> str:
        b, place, g = self.bundle, self.place, self.group
        batch = (f"{g.size} processes × batch {self.cfg.data.batch_size} = {self.global_batch}"
                 + (" (SyncBN)" if self.cfg.run.sync_bn else "")
                 if g.size > 1 else f"batch {self.global_batch}")  # fmt: skip
        return (f"run {self.run_dir}: {self.cfg.model.name} on {b.source}; train {len(b.train):,}, "
                f"val {len(b.val):,} ({b.val_note}), test "
                f"{len(b.test) if b.test is not None else 0:,}; {place.device} {place.precision}"
                f"{' channels_last' if place.channels_last else ''}; {batch}, lr {self.lr:g}; "
                f"{self.steps_per_epoch} steps/epoch, up to {self.max_epochs} epochs")  # fmt: skip


# Run settings ``--resume`` keeps: the seed chose the validation split, the training subset
# and every epoch's batch order, so a new one would re-split the data mid-run; the name is
# the folder the run lives in (the library may resume a folder under an older name).
FIXED_RUN_KEYS = ("seed", "name")


def _check_resumable(cfg: TrainConfig, state: dict[str, Any], path: Path) -> None:
    saved = config_from_dict(state["config"])
    _check_resume_target(path)
    _check_config_file(cfg, state["config"], path.parent / "config.yaml")
    done, step = int(state["epoch"]), int(state["step"])
    if cfg.run.epochs is not None and cfg.run.epochs < done:
        raise ConfigError(
            f"cannot resume {path} with run.epochs {cfg.run.epochs}: it has trained {done} "
            f"epochs already (give --epochs {done} or more, or leave it out)"
        )
    if cfg.run.iterations is not None and cfg.run.iterations < step:
        raise ConfigError(
            f"cannot resume {path} with run.iterations {cfg.run.iterations}: it has trained "
            f"{step} already (give --iterations {step} or more, or leave it out)"
        )
    # Only the run section (length, device) may differ: anything else would not be the same
    # run continued.
    for section in ("model", "data", "optim", "schedule"):
        if getattr(saved, section) != getattr(cfg, section):
            raise ConfigError(f"cannot resume {path} with a different {section} config; only "
                              "run settings (epochs, time limit) may change")  # fmt: skip
    if saved.run.tta != cfg.run.tta:  # the best checkpoint so far was chosen with its views
        raise ConfigError(
            f"cannot resume {path} with run.tta {cfg.run.tta!r}: it selects with {saved.run.tta!r}"
        )
    if saved.run.seed != cfg.run.seed:
        raise ConfigError(
            f"cannot resume {path} with a different run.seed ({cfg.run.seed}; the run has "
            f"{saved.run.seed}): the seed chose its validation split and batch order"
        )


def _check_resume_target(path: Path) -> None:
    """Resuming from ``RUN/best.pt`` (or any file beside a ``last.pt``) would save the
    continued run's ``last.pt`` over the one there, losing the epochs after the best."""
    last = path.parent / "last.pt"
    if path.name != "last.pt" and last.exists() and not last.samefile(path):
        raise ConfigError(
            f"resuming from {path} would overwrite {last}, the run's own latest checkpoint; "
            f"resume {path.parent} itself, or copy {path.name} into a folder of its own to "
            "branch from it"
        )


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) and k != "options" else {key: v})
    return out


def _check_config_file(cfg: TrainConfig, saved: dict[str, Any], file: Path) -> None:
    """``RUN/config.yaml`` says what the run is; ``--resume`` continues the checkpoint's
    config and rewrites the file. An edit to the file would be ignored and then lost, so it
    is refused, naming the key. A run setting the command line changes (``--epochs``) may
    differ: the file may hold a value from a session killed before its first checkpoint."""
    if not file.is_file():
        return
    from resnetlab.train.config import load_yaml, yaml_reason

    try:
        on_disk = load_yaml(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {file}: {yaml_reason(err)}") from err
    ours, theirs, new = _flatten(plain(saved)), _flatten(on_disk), _flatten(cfg.to_dict())
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) == theirs.get(key):
            continue
        if key.startswith("run.") and new.get(key) != ours.get(key):
            continue  # set on this command line: it wins, and the file will say so
        raise ConfigError(
            f"{file} was edited: {key} is {theirs.get(key)!r} there, {ours.get(key)!r} in the "
            "run's checkpoint; --resume continues the checkpoint's config, so undo the edit "
            "(run settings such as --epochs go on the command line) or start a new run"
        )


def fit(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    log: Log = print,
    command: str | None = None,
) -> RunResult:
    """Train ``cfg`` (or continue the run saved at ``resume``) and return where it ended.

    ``command`` (the command line that started the run) is recorded in the report. Under
    ``torchrun`` every process calls this; each returns the same result.
    """
    with session(cfg.run.device) as group:
        return _fit(cfg, group, resume, log if group.is_main else _silent, command)


def _silent(_msg: str) -> None:
    pass


# What a run writes into its folder (the lock file aside).
RUN_FILES = ("last.pt", "best.pt", "config.yaml", CSV_NAME, JSONL_NAME, STEPS_NAME,
             "results.json", "report.md", "curves.png", "confusion.png")  # fmt: skip


def dead_run_files(run_dir: Path) -> list[str]:
    """The run files in ``run_dir`` (none: a new folder)."""
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def clear_dead_run(run_dir: Path) -> list[str]:
    """Remove the files of a run that died before its first checkpoint (nothing in them can
    be continued), so that a fresh run there does not append to its logs; returns the names
    removed. For callers that own the folder's contents, such as the experiments' run
    store; ``resnetlab train`` refuses such a folder instead."""
    with folder_lock(run_dir, hint="; wait for it to finish"):  # a live run is not dead
        if (run_dir / "last.pt").exists():
            raise ConfigError(f"{run_dir} holds a checkpoint: resume it, do not clear it")
        names = dead_run_files(run_dir)
        for name in names:
            (run_dir / name).unlink()
    return names


def _check_new(run_dir: Path) -> None:
    """A fresh run starts in an empty folder: never on top of another run's logs."""
    if (run_dir / "last.pt").exists():
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume "
                          f"{run_dir} or choose another --name")  # fmt: skip
    left = dead_run_files(run_dir)
    if left:
        raise ConfigError(f"{run_dir} holds the files of a run that saved no checkpoint "
                          f"({', '.join(left)}), which cannot be resumed; remove them or "
                          "choose another --name")  # fmt: skip


def _check_out_dir(out: Path) -> None:
    """``--out RUN`` would nest a new run inside an existing one."""
    held = [name for name in ("last.pt", "config.yaml") if (out / name).is_file()]
    if held:
        raise ConfigError(
            f"run.out_dir (--out) {out} is a run folder (it holds {held[0]}); --out names the "
            f"folder run folders go in: give its parent, or --resume {out} to continue it"
        )


@contextmanager
def _owned(run_dir: Path, *, fresh: bool) -> Iterator[None]:
    """This process owns ``run_dir`` while the block runs (see :func:`folder_lock`): two
    runs with one ``--name`` would interleave their metrics and overwrite each other's
    checkpoints."""
    hint = "; wait for it to finish" + (" or choose another --name" if fresh else "")
    with folder_lock(run_dir, hint=hint):
        if fresh:
            _check_new(run_dir)
        yield


def _fit(
    cfg: TrainConfig, group: Group, resume: str | Path | None, log: Log, command: str | None
) -> RunResult:
    state: dict[str, Any] | None = None
    if resume is not None:
        path = checkpoint_file(resume)
        state = load_checkpoint(path)  # every rank reads it: the folder must be shared
        _check_resumable(cfg, state, path)
        run_dir = path.parent  # a resumed run continues where its checkpoint lives
    else:
        _check_out_dir(Path(cfg.run.out_dir).expanduser())
        run_dir = group.broadcast(_run_dir(cfg))  # rank 0's: the default name holds the time
    with ExitStack() as owner:
        problem = ""
        if group.is_main:  # rank 0 writes the folder, so rank 0 owns it
            try:
                owner.enter_context(_owned(run_dir, fresh=state is None))
            except (ValueError, OSError) as err:
                problem = str(err)
        problem = group.broadcast(problem)  # every rank stops, not only rank 0
        if problem:
            raise ConfigError(problem)
        return _train(cfg, group, run_dir, state, log, command)


def _train(
    cfg: TrainConfig,
    group: Group,
    run_dir: Path,
    state: dict[str, Any] | None,
    log: Log,
    command: str | None,
) -> RunResult:
    cfg, pipeline = resolve_pipeline(cfg)
    run = _Run(cfg, run_dir, log, group)
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        if state is not None:  # epochs logged after the checkpoint are trained again
            truncate_metrics(run_dir, int(state["epoch"]))
    if state is not None:
        run.restore(state)
    log(run.describe())
    if pipeline:
        log(pipeline)

    signals = _Signals()
    limit_s = cfg.run.time_limit_min * 60 if cfg.run.time_limit_min else None

    def should_stop() -> str:
        if signals.received:
            return signals.received
        if limit_s is not None and time.monotonic() - run.started > limit_s:
            return "time"
        return ""

    status = "completed"
    steps = StepLog(run_dir) if group.is_main else None
    metrics: AbstractContextManager[MetricsLogger | None] = (
        MetricsLogger(run_dir) if group.is_main else nullcontext()
    )
    with signals.installed(), metrics as logger:
        while run.pos.epoch < run.max_epochs:
            out, generator = run.train_epoch(should_stop, steps)
            if out.stopped == "nan":
                log(f"stopped: the training loss became NaN/inf in epoch {run.pos.epoch + 1} "
                    f"(near step {out.step}); the last good checkpoint is "
                    f"{run_dir / 'last.pt'} (try a lower learning rate)")  # fmt: skip
                status = "nan"
                break
            run.pos.step = out.step
            finished = run.pos.partial is not None and (
                run.pos.partial.batches_done >= run.steps_per_epoch
            )
            if out.stopped in ("sigint", "sigterm") or (out.stopped == "time" and not finished):
                run.pause(out.stopped, generator)
                status = out.stopped
                break
            if run.close_epoch(out, run.validate(), logger):
                status = "early_stop"
                break
            if out.stopped == "time":
                status = "time"
                break
            if out.stopped == "iterations":  # the planned number of steps: a finished run
                break
    if steps is not None:
        steps.close()
    if not group.is_main:
        return RunResult(run_dir, status, run.pos.epoch, run.pos.best_top1, None)
    with signals.installed():  # a signal now stops the test evaluation, not the process
        return _finish(run, status, command, signals)


def _finish(
    run: _Run, status: str, command: str | None, signals: _Signals | None = None
) -> RunResult:
    """Curves, the one test evaluation (best checkpoint), results.json and report.md. A
    SIGTERM or Ctrl-C during the test stops it: results.json says so (no test figures) and
    ``--resume`` runs the test again (every epoch is in last.pt already)."""
    cfg, run_dir = run.cfg, run.run_dir
    signals = signals or _Signals()
    rows = read_metrics(run_dir)
    if rows:
        plot_curves(rows, run_dir / "curves.png", title=f"{cfg.model.name}, {cfg.recipe} recipe")
    test = None
    stopped_early = status in ("nan", "sigint", "sigterm")
    if (
        not stopped_early
        and cfg.run.test
        and run.bundle.test is not None
        and (run_dir / "best.pt").is_file()
    ):
        try:
            if signals.received:
                raise _Stopped(signals.received)
            with signals.raising():
                test = final_test(run.model, run.bundle, run.pre, run.place, run_dir, cfg,
                                  run.log)  # fmt: skip
        except _Stopped as stop:
            status, test = str(stop), None
            run.log(f"{status}: stopped during the test evaluation, before any test figure was "
                    f"written; every epoch is saved: `resnetlab train --resume {run_dir}` "
                    "runs the test")  # fmt: skip
    write_results(run_dir, cfg, run.bundle, run.place, status, run.pos.epoch,
                   run.pos.best_top1, test, run.started, command)  # fmt: skip
    return RunResult(run_dir, status, run.pos.epoch, run.pos.best_top1, test)


def checkpoint_file(resume: str | Path) -> Path:
    """A run folder means its ``last.pt``."""
    path = Path(resume)
    return path / "last.pt" if path.is_dir() else path


def resume_config(resume: str | Path, run_overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of a run, with ``run.*`` overrides (``run.epochs=40``) applied."""
    saved = load_checkpoint(checkpoint_file(resume))["config"]
    bad = sorted(k for k in run_overrides if not k.startswith("run."))
    bad += sorted(
        f"run.{k}"
        for k in FIXED_RUN_KEYS
        if f"run.{k}" in run_overrides and run_overrides[f"run.{k}"] != saved["run"].get(k)
    )
    if bad:
        raise ConfigError(
            f"--resume continues a run as it was configured; {bad[0]} cannot change "
            "(only how long and where it runs: --epochs, --iterations, --time-limit, --device)"
        )
    return config_from_dict(apply_overrides(saved, run_overrides))
