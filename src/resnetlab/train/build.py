"""What a run is built from: its network (from the config, initialised from pretrained
weights, partly frozen) and its preprocessing (the pipeline ``data.augment: auto`` picks,
the normalisation statistics)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from resnetlab.data.augment import Preprocess, split_augment
from resnetlab.data.datasets import DataBundle
from resnetlab.errors import InvalidValueError
from resnetlab.interop.fact_sheet import PublishedWeights
from resnetlab.models.registry import create_model
from resnetlab.models.resnet import ResNet
from resnetlab.runtime.checkpoint import Checkpoint, CheckpointError
from resnetlab.runtime.config import ConfigError, TrainConfig
from resnetlab.runtime.execution import compile_pays, compile_unavailable

log = logging.getLogger(__name__)


def compiled_for_training(
    net: nn.Module, cfg: TrainConfig, device: torch.device, steps: int
) -> nn.Module:
    """``net`` compiled as ``run.compile`` asks (``auto``: where it pays for a run of
    ``steps`` steps, :func:`~resnetlab.runtime.execution.compile_pays`), else ``net``. Only
    the training forward/backward is compiled; checkpoints hold the plain model."""
    wanted = cfg.run.compile
    if wanted == "auto":
        wanted, why = compile_pays(device, steps)
        log.info(f"run.compile auto: {'on' if wanted else 'off'} ({why})")
    if not wanted:
        return net
    why_not = compile_unavailable(device)
    if why_not:
        log.info(f"run.compile skipped: {why_not}; training runs eager")
        return net
    log.info(
        f"torch.compile (mode {cfg.run.compile_mode}): the first steps (and a last, smaller "
        "batch) build the graph"
    )
    return torch.compile(net, mode=cfg.run.compile_mode)  # type: ignore[return-value]


@dataclass(frozen=True)
class PretrainedSource:
    """``model.pretrained`` resolved once (:func:`resolve_pretrained`): the local file (a
    catalogue name downloaded and hash-checked) and its catalogue entry (``None``: not in the
    catalogue). ``file`` is ``None`` where it could not be resolved: loading the weights
    then reports why, in one line."""

    text: str
    file: Path | None
    entry: PublishedWeights | None


def resolve_pretrained(cfg: TrainConfig) -> PretrainedSource | None:
    """``model.pretrained`` → its file and catalogue entry (``None``: no pretrained weights)."""
    from resnetlab.interop.published import is_weights_name, resolve

    text = cfg.model.pretrained
    if not text:
        return None
    if not (is_weights_name(text) or Path(text).is_file()):
        return PretrainedSource(text, None, None)
    try:
        file, entry = resolve(text)
    except CheckpointError:
        return PretrainedSource(text, None, None)
    return PretrainedSource(text, file, entry)


def check_data_options(cfg: TrainConfig, bundle: DataBundle) -> None:
    """``model.options`` the data decides (``num_classes``, ``in_channels``) set to other
    values are refused: the network is built from the data, and config.yaml must say what
    was built."""
    from_data = {"num_classes": len(bundle.classes), "in_channels": bundle.train.image_size[0]}
    for key, value in from_data.items():
        asked = cfg.model.options.get(key)
        if asked is not None and asked != value:
            what = "classes" if key == "num_classes" else "channels (images are decoded as RGB)"
            raise ConfigError(
                f"model.options.{key}={asked!r}, but the data has {value} {what}; leave "
                f"{key} out (it is taken from the data)"
            )


# The built-in recipes whose settings assume pretrained weights (model.pretrained).
EXPECTS_PRETRAINED = ("finetune",)


def say_unpretrained(cfg: TrainConfig) -> None:
    """One line where a recipe meant for pretrained weights runs without them."""
    if cfg.recipe in EXPECTS_PRETRAINED and not cfg.model.pretrained:
        o = cfg.optim
        log.info(
            f"note: the {cfg.recipe} recipe expects pretrained weights (--pretrained NAME|FILE; "
            f"`resnetlab weights` lists them); without them this trains a randomly initialised "
            f"{cfg.model.name} with fine-tuning settings ({o.name} lr {o.lr:g}), which may "
            "stay near chance on a small set (--recipe fast trains from scratch)"
        )


def build_model(
    cfg: TrainConfig,
    num_classes: int,
    in_channels: int,
    pretrained: PretrainedSource | None = None,
    classes: tuple[str, ...] | None = None,
) -> nn.Module:
    """The run's network; ``pretrained`` is ``model.pretrained`` resolved (else resolved
    here); ``classes``: the data's class names (a pretrained head trained for others is
    reset)."""
    options = {**cfg.model.options, "num_classes": num_classes, "in_channels": in_channels}
    model = create_model(cfg.model.name, **options)
    if cfg.model.pretrained:
        init_from_pretrained(model, cfg.model.pretrained, pretrained, classes)
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
        raise InvalidValueError(f"{name} has no head to train alone")
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
        raise InvalidValueError(f"model.freeze_until needs a ResNet's stages; {name} has none")
    parts = ("stem", *model.stage_names)
    if stage not in parts:
        raise InvalidValueError(f"model.freeze_until {stage!r}: {name} has {', '.join(parts)}")
    frozen: list[nn.Module | None] = [model.conv1, model.bn1]
    frozen += model.stages()[: parts.index(stage)]
    for module in frozen:
        if module is not None:
            module.requires_grad_(False)


def check_pretrained_fits(cfg: TrainConfig, source: PretrainedSource | None) -> None:
    """Raise now, before any data is decoded, where ``model.pretrained`` holds another
    architecture than ``model.name`` (:func:`init_from_pretrained` would refuse it after)."""
    if not cfg.model.pretrained:
        return
    model = create_model(cfg.model.name, **cfg.model.options)
    _usable(
        model,
        _pretrained_state(model, cfg.model.pretrained, source, say=False),
        cfg.model.pretrained,
    )


def init_from_pretrained(
    model: nn.Module,
    path: str,
    source: PretrainedSource | None = None,
    classes: tuple[str, ...] | None = None,
) -> None:
    """Load the weights at ``path`` (our checkpoint, a weights file, a catalogue name;
    ``source``: already resolved) into ``model``, every tensor that fits. A head that fits
    but was trained for other class names than ``classes`` (our checkpoints record them)
    is not loaded: it is reset, saying so."""
    usable = _usable(model, _pretrained_state(model, path, source), path)
    trained_for = _classes_of(path)
    if classes is not None and trained_for is not None and trained_for != classes:
        prefixes = tuple(f"{n}." for n, m in model.named_modules() if m is _head_or_none(model))
        head = [k for k in usable if prefixes and k.startswith(prefixes)]
        if head:
            for k in head:
                del usable[k]
            log.info(
                f"{path}: its head was trained for other classes "
                f"({', '.join(trained_for[:3])}{'…' if len(trained_for) > 3 else ''}; this "
                f"data: {', '.join(classes[:3])}{'…' if len(classes) > 3 else ''}): reset"
            )
    skipped = sorted(set(model.state_dict()) - set(usable))
    model.load_state_dict(usable, strict=False)
    log.info(
        f"initialised from {path}: {len(usable)} tensors loaded, {len(skipped)} kept fresh "
        f"({', '.join(skipped[:4])}{'…' if len(skipped) > 4 else ''})"
    )


def _classes_of(path: str) -> tuple[str, ...] | None:
    """The class names our checkpoint at ``path`` was trained for (None: not ours)."""
    try:
        return tuple(Checkpoint.load(path).classes)
    except CheckpointError:
        return None


def _head_or_none(model: nn.Module) -> nn.Module | None:
    head = model.fc if isinstance(model, ResNet) else getattr(model, "classifier", None)
    return head if isinstance(head, nn.Module) else None


def _usable(model: nn.Module, state: dict[str, torch.Tensor], path: str) -> dict[str, torch.Tensor]:
    """The tensors of ``state`` that fit ``model``; fewer than half of them is another
    architecture, refused in one line that names both and the ``--model`` that fits."""
    from resnetlab.interop.compat import mismatch_message

    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < len(own) // 2:
        raise CheckpointError(
            mismatch_message(path, state, model)
            or f"{path} does not fit {type(model).__name__}: only "
            f"{len(usable)} of {len(own)} tensors match"
        )
    return usable


def _quiet(_msg: str) -> None:
    pass


def _pretrained_state(
    model: nn.Module, path: str, source: PretrainedSource | None, *, say: bool = True
) -> dict[str, torch.Tensor]:
    """The tensors at ``path`` (our checkpoint, a weights file, a catalogue name), in our
    names (akamaster's CIFAR layout converted); ``say``: log what the file is."""
    info = log.info if say else _quiet
    from resnetlab.interop.compat import from_akamaster
    from resnetlab.interop.foreign_files import read_state_dict
    from resnetlab.interop.published import resolve

    try:
        return dict(Checkpoint.load(path).model)
    except CheckpointError:
        if source is not None and source.file is not None:
            file, entry = source.file, source.entry
        else:
            file, entry = resolve(path)  # a catalogue name is downloaded (hash-checked) here
        if entry is not None:
            info(f"{path}: published weights {entry.name} ({entry.layout} layout)")
        if entry is not None and not entry.sha256:
            from resnetlab.interop.foreign_files import sha256_of

            info(f"{file}: not hash-checked (no published SHA-256); its SHA-256 {sha256_of(file)}")
        state = dict(read_state_dict(file))  # a torchvision/timm/akamaster weights file
        if "linear.weight" in state and "fc.weight" not in state and isinstance(model, ResNet):
            # Renaming alone would load strictly and compute something else: akamaster's
            # option-A shortcut orders the residual channels differently (models.compat).
            state = from_akamaster(state)
            info(f"{path}: akamaster's CIFAR layout (linear → fc, residual channels reordered)")
        return state


def resolve_pipeline(cfg: TrainConfig) -> tuple[TrainConfig, str]:
    """``data.augment: auto`` → the pipeline the data's first image calls for (photos: the
    ImageNet one, with the stored and input sizes; small images: pad-and-crop), written
    into the config so the run's config.yaml and checkpoints say what was done. With
    ``imagenet`` or a policy (``trivialaugment``…) the augmentation is the user's, and the
    sizes are still chosen from the first image: photos of mixed sizes need a stored size."""
    from resnetlab.data.policies import POLICIES

    d = cfg.data
    if d.augment not in ("auto", "imagenet", *POLICIES):
        return cfg, ""
    from resnetlab.data.pipeline import choose_pipeline

    p = choose_pipeline(d.source, image_size=d.image_size, load_size=d.load_size)
    if d.augment == "imagenet" and p.augment != "imagenet":
        return cfg, ""  # the user's pipeline on small images: nothing to size
    augment = p.augment if d.augment == "auto" else d.augment
    data = replace(d, augment=augment, image_size=p.image_size, load_size=p.load_size)
    policy = f"; policy {d.augment}" if d.augment in POLICIES else ""
    return replace(cfg, data=data), p.describe(d.interpolation) + policy


def resolve_pretrained_options(
    cfg: TrainConfig, pretrained: PretrainedSource | None = None
) -> TrainConfig:
    """``model.pretrained`` naming catalogued weights whose model needs options (chenyaofo's
    CIFAR nets: ``shortcut: B``) → those options written into ``model.options``, so the run
    builds the net the weights fit, and its config.yaml and checkpoints rebuild it. Without
    this, option-A ``resnet20`` would take every tensor it has a name for and silently drop
    the projections. An option set otherwise is a conflict, not overridden. ``pretrained``:
    already resolved."""
    w = _entry(cfg, pretrained)
    if w is None or not w.model_options or cfg.model.name != w.model:
        return cfg
    options = dict(cfg.model.options)
    for key, value in w.model_options:
        if key in options and options[key] != value:
            raise ConfigError(
                f"model.options.{key}={options[key]!r}, but {w.name} needs {key}={value!r}"
            )
        options[key] = value
    return replace(cfg, model=replace(cfg.model, options=options))


def _entry(cfg: TrainConfig, pretrained: PretrainedSource | None) -> PublishedWeights | None:
    """The catalogue entry of ``model.pretrained`` (a name, or a file known by its hash)."""
    source = pretrained if pretrained is not None else resolve_pretrained(cfg)
    return source.entry if source is not None else None


def preprocess_for(
    cfg: TrainConfig, bundle: DataBundle, pretrained: PretrainedSource | None = None
) -> Preprocess:
    """The run's preprocessing. Fine-tuning from published weights keeps the mean/std they
    were trained with (the features expect them); otherwise the training split's own.
    ``pretrained``: ``model.pretrained`` already resolved."""
    d, side = cfg.data, bundle.train.image_size[1]
    w = _entry(cfg, pretrained)
    mean, std = (w.preprocessing.mean, w.preprocessing.std) if w else (bundle.mean, bundle.std)
    if d.augment == "auto":  # resolved once, before: a second guess here could disagree
        raise RuntimeError("data.augment is still 'auto': resolve_pipeline(cfg) comes first")
    base, policy = split_augment(d.augment, side, d.image_size or side)
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
