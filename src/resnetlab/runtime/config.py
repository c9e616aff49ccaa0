"""Training configuration: recipe file (YAML) → command-line overrides → frozen dataclasses.

A recipe is a nested mapping with the sections ``model``, ``data``, ``optim``,
``schedule`` and ``run``. Overrides use dotted keys (``optim.lr=0.05``). Every run saves
the resolved config next to its checkpoints, so it can be repeated exactly.

This module owns the dataclasses, the recipes and the checks a whole config must pass; the
YAML it reads and the ``--set`` value grammar are :mod:`~resnetlab.runtime.yaml_text`'s, the
type check of each section's values :mod:`~resnetlab.runtime.typed_fields`'s.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from resnetlab.errors import ConfigError as ConfigError
from resnetlab.runtime.typed_fields import coerce_section
from resnetlab.runtime.yaml_text import check_expanded_size, load_yaml, yaml_reason

RECIPES = ("paper-cifar", "paper-imagenet", "finetune", "fast")
# Earlier names of schedules, read wherever a config comes from (a recipe, --set, a run's
# config.yaml, a checkpoint) as the name it has now.
SCHEDULE_ALIASES = {"onecycle": "warmup-linear"}


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet20"
    options: dict[str, Any] = field(default_factory=dict)  # create_model overrides
    pretrained: str | None = None  # checkpoint whose weights initialise the model (fine-tuning)
    freeze_backbone: bool = False  # train only the head (the finetune recipe's frozen base)
    # Freeze the stem and the stages up to this one ("stem", "layer1", …): their weights get
    # no gradient and their BN layers stay in eval mode (docs/finetune.md says why). None: off.
    freeze_until: str | None = None


@dataclass(frozen=True)
class DataConfig:
    source: str = "cifar10"  # cifar10 | cifar100 | sample | a folder | a .tar(.gz) archive
    root: str | None = None  # where cifar10/cifar100 live (default: ~/.cache/resnetlab/data)
    download: bool = False
    val_fraction: float = 0.1  # held out of train when the data has no val split (paper: 5k/50k)
    image_size: int | None = None  # model input side; None: the images' own size
    load_size: int | None = None  # resize stored images to this side when loading
    # The resize filter when storing photos (and in predict): torchvision's weights were
    # evaluated with bilinear, most of timm's with bicubic (data.images.resample_filter).
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    # keep: the last, smaller batch of an epoch trains (the recipes); drop: it is left out,
    # as earlier code did (the default, so a run folder of that code resumes exactly).
    last_batch: Literal["keep", "drop"] = "drop"
    # all: limit_per_class limits train, val and test, and only those files are decoded
    # (the recipes); train: the training split alone, as earlier code did (the default).
    limit_splits: Literal["all", "train"] = "train"
    # auto: photos get the ImageNet pipeline, small images pad-and-crop (data.pipeline);
    # cifar: pad-crop + flip; imagenet: random-resized crop + flip; trivialaugment,
    # randaugment, autoaugment: one of those (see data.augment.policy_base) + the policy
    augment: Literal[
        "auto", "cifar", "imagenet", "none", "trivialaugment", "randaugment", "autoaugment"
    ] = "auto"
    padding: int = 4
    random_erasing: float = 0.0  # probability per image of erasing a box (Zhong et al. 2017)
    mixup_alpha: float = 0.0  # Beta(α, α) mixing of image pairs (Zhang et al. 2018); 0: off
    cutmix_alpha: float = 0.0  # Beta(α, α) box pasting (Yun et al. 2019); 0: off
    mix_switch_prob: float = 0.5  # with both α > 0: chance a batch uses CutMix, not mixup
    batch_size: int = 128
    eval_batch_size: int = 500
    limit_per_class: int | None = None  # use at most this many training images per class
    on_error: Literal["skip", "fail"] = "skip"
    cache: bool = True  # keep decoded tensors in the cache folder
    in_memory: bool | None = None  # None: decode into memory unless too large, then stream


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    # Weight decay of BN (norm) weights and every bias; None: optim.weight_decay, as the
    # paper applies it to all parameters; 0: none (the modern recipes' choice).
    norm_bias_decay: float | None = None
    # Exponential moving average of the weights (and BN statistics), updated every step;
    # it is what is validated, selected and saved as the model. 0: off.
    ema_decay: float = 0.0
    # Discriminative learning rate: the pretrained backbone trains at lr × this, the fresh
    # head at lr (Howard & Ruder 2018). Applies only with model.pretrained. 1.0: one lr.
    backbone_lr_scale: float = 1.0
    # The global batch ``lr`` was set for; with run.scale_lr, lr × global batch / this
    # (the linear scaling rule for multi-process runs). None: lr is used as given.
    reference_batch: int | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    # warmup-linear: a linear warm-up over warmup_epochs, then a linear decay to min_lr (not
    # torch's OneCycleLR; earlier recipes and run folders call it "onecycle", still read).
    name: Literal["multistep", "cosine", "warmup-linear", "plateau", "constant"] = "multistep"
    unit: Literal["iter", "epoch"] = "iter"  # what milestones count
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear warm-up (cosine, warmup-linear)
    # Paper §4.2: ResNet-110/1202 start at 0.01 until training error < 80%, then 0.1.
    warmup_lr: float | None = None
    warmup_until_error: float = 0.8
    warmup_min_depth: int = 110
    plateau_metric: Literal["val_loss", "val_top1"] = "val_loss"
    plateau_patience: int = 3
    plateau_factor: float = 0.2
    min_lr: float = 0.0


@dataclass(frozen=True)
class RunConfig:
    epochs: int | None = None
    iterations: int | None = None  # stop after this many steps (the paper counts iterations)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool | None = None  # None: on when precision is bf16/fp16
    # torch.compile the training forward/backward; "auto": where it measured faster
    # (runtime.execution.compile_pays: CPUs with AMX)
    compile: Literal[True, False, "auto"] = False
    # "reduce-overhead" adds CUDA graphs on a GPU; "max-autotune" also tunes kernels
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    early_stopping_patience: int | None = None  # epochs without a better val metric
    early_stopping_metric: Literal["val_loss", "val_top1"] = "val_loss"
    time_limit_min: float | None = None  # stop (and save) once this much time has passed
    # Size the schedule to end within this many wall minutes, from the time of its warm-up
    # (train.time_budget; warmup-linear/cosine with warm-up epochs); also the time limit.
    budget_min: float | None = None
    out_dir: str = "runs"
    name: str | None = None  # run folder name; default: <model>-<recipe>-<timestamp>
    test: bool = True  # evaluate the best checkpoint on the test split once, at the end
    log_every: int = 50  # steps between NaN checks and progress updates
    # Test-time augmentation of validation and test evaluation alike (so the model is
    # selected as it is tested): average the logits over mirror (and 1-pixel shift) views.
    tta: Literal["none", "flip", "flip-shift"] = "none"
    # Under torchrun (data.batch_size is per process):
    sync_bn: bool = False  # BN statistics over the global batch instead of each process's
    scale_lr: bool = True  # apply optim.reference_batch's linear scaling rule


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = plain(dataclasses.asdict(self))
        return out


SECTIONS: dict[str, type[Any]] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "run": RunConfig,
}


def plain(obj: Any) -> Any:
    """Tuples to lists, recursively: a value YAML and ``weights_only`` loading both accept."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def recipe_path(name: str) -> Path:
    """A built-in recipe's file, or ``name`` itself if it is a YAML file."""
    if name in RECIPES:
        return Path(str(resources.files("resnetlab.runtime") / "recipes" / f"{name}.yaml"))
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    raise ConfigError(f"unknown recipe {name!r}: choose {', '.join(RECIPES)} or a .yaml file")


def load_recipe(name: str) -> dict[str, Any]:
    path = recipe_path(name)
    try:
        data = load_yaml(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read recipe {path}: {yaml_reason(err)}") from err
    check_expanded_size(data, f"recipe {path}")
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of sections")
    data.setdefault("recipe", name if name in RECIPES else path.stem)
    return data


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if section not in SECTIONS:
            raise ConfigError(
                f"unknown section {section!r} in {dotted!r}; sections: {', '.join(SECTIONS)}"
            )
        if out.get(section) is None:  # absent, or an empty `run:` line in the recipe
            out[section] = {}
        target = out[section]
        if not isinstance(target, dict):
            raise ConfigError(f"section {section!r} must be a mapping")
        if section == "model" and key.startswith("options."):
            if target.get("options") is None:
                target["options"] = {}
            if not isinstance(target["options"], dict):
                raise ConfigError(f"model.options must be a mapping, got {target['options']!r}")
            target["options"][key.removeprefix("options.")] = value
        else:
            target[key] = value
    return out


def current_names(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a nested config mapping) with a schedule's earlier name replaced by its
    name now (:data:`SCHEDULE_ALIASES`); ``data`` itself is not changed."""
    schedule = data.get("schedule")
    if not isinstance(schedule, dict):
        return data
    name = schedule.get("name")
    if not isinstance(name, str) or name not in SCHEDULE_ALIASES:
        return data
    return {**data, "schedule": {**schedule, "name": SCHEDULE_ALIASES[name]}}


def build_config(data: dict[str, Any]) -> TrainConfig:
    """Validate a nested mapping into a :class:`TrainConfig` (one-line errors)."""
    data = current_names(data)
    unknown = sorted(set(data) - set(SECTIONS) - {"recipe"})
    if unknown:
        raise ConfigError(f"unknown recipe section {unknown[0]!r}; sections: {', '.join(SECTIONS)}")
    parts = {
        name: coerce_section(cls, name, data.get(name) or {}) for name, cls in SECTIONS.items()
    }
    cfg = TrainConfig(recipe=str(data.get("recipe", "custom")), **parts)
    validate(cfg)
    return cfg


def _positive(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < math.inf  # NaN fails this too
    ):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _finite(cfg: TrainConfig) -> None:
    """No NaN or infinity anywhere: ``x < 0`` is false for NaN, so a NaN momentum would
    pass every range check below and train straight into the NaN guard."""
    for section in SECTIONS:
        for f in fields(getattr(cfg, section)):
            value = getattr(getattr(cfg, section), f.name)
            values = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise ConfigError(f"{section}.{f.name} must be a finite number, got {value!r}")


# torch.manual_seed takes 64 bits and NumPy's generators 32; a seed is a label, so the
# smaller range, said in the flag's words (the overflow used to surface from torch).
MAX_SEED = 2**32 - 1


# Devices a model can train or run on (``meta`` holds no data: it only has shapes).
RUNNABLE_DEVICES = ("auto", "cpu", "cuda", "mps", "xpu")


def _check_run_names(r: RunConfig) -> None:
    """The seed's range, and a run name that is one folder inside ``run.out_dir``: ``/abs``
    or ``../x`` would write outside it."""
    if not 0 <= r.seed <= MAX_SEED:
        raise ConfigError(
            f"run.seed (--seed) must be an integer from 0 to {MAX_SEED:,}, got {r.seed}"
        )
    name = r.name
    if name is not None and (
        not name.strip()
        or name in (".", "..")
        or any(c in name for c in ("/", "\0"))
        or (os.altsep is not None and os.altsep in name)
    ):
        raise ConfigError(
            f"run.name (--name) must be one folder name inside run.out_dir (--out), got "
            f"{name!r}; give the folder's location with --out"
        )


def validate(cfg: TrainConfig) -> None:
    """What the fields' types cannot say (ranges, combinations); a ``Literal`` field's
    choices were refused already, by :func:`~resnetlab.runtime.typed_fields.coerce_section`."""
    r, d, o = cfg.run, cfg.data, cfg.optim
    _finite(cfg)
    _check_run_names(r)
    if d.padding < 0:
        raise ConfigError(f"data.padding must be a number of pixels ≥ 0, got {d.padding}")
    if r.epochs is None and r.iterations is None and r.time_limit_min is r.budget_min is None:
        raise ConfigError("give run.epochs, run.iterations, run.time_limit_min or run.budget_min")
    for name, value in (
        ("run.epochs", r.epochs),
        ("run.iterations", r.iterations),
        ("run.time_limit_min", r.time_limit_min),
        ("run.budget_min", r.budget_min),
        ("optim.lr", o.lr),
        ("data.batch_size", d.batch_size),
        ("data.eval_batch_size", d.eval_batch_size),
        ("data.image_size", d.image_size),
        ("data.load_size", d.load_size),
        ("data.limit_per_class", d.limit_per_class),
        ("run.log_every", r.log_every),
        ("optim.reference_batch", o.reference_batch),
        ("optim.backbone_lr_scale", o.backbone_lr_scale),
    ):
        _positive(name, value)
    if not 0.0 < d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {d.val_fraction}")
    if not 0.0 <= o.label_smoothing < 1.0:
        raise ConfigError(f"optim.label_smoothing must be in [0, 1), got {o.label_smoothing}")
    if o.weight_decay < 0 or o.momentum < 0:
        raise ConfigError("optim.weight_decay and optim.momentum must not be negative")
    non_negative = {
        "data.mixup_alpha": d.mixup_alpha,
        "data.cutmix_alpha": d.cutmix_alpha,
        "optim.norm_bias_decay": o.norm_bias_decay or 0.0,
    }
    for name, value in non_negative.items():
        if not 0.0 <= value < math.inf:
            raise ConfigError(f"{name} must be a number ≥ 0, got {value!r}")
    for name, value in {
        "data.random_erasing": d.random_erasing,
        "data.mix_switch_prob": d.mix_switch_prob,
    }.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
    if not 0.0 <= o.ema_decay < 1.0:
        raise ConfigError(f"optim.ema_decay must be in [0, 1) (0: off), got {o.ema_decay!r}")
    if str(r.device).split(":")[0] not in RUNNABLE_DEVICES:  # before the run folder is made
        raise ConfigError(f"unknown device {r.device!r}: run.device must be auto, cpu or cuda[:N]")
    if cfg.model.freeze_until is not None and cfg.model.freeze_backbone:
        raise ConfigError("give model.freeze_until or model.freeze_backbone, not both")


def resolve_config(recipe: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Recipe file → overrides → validated :class:`TrainConfig`."""
    return build_config(apply_overrides(load_recipe(recipe), overrides or {}))


def save_config(cfg: TrainConfig, path: str | os.PathLike[str]) -> None:
    from resnetlab.fileio import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved in a checkpoint."""
    return build_config(data)
