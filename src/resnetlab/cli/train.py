"""``train``: a recipe, flags and ``--set`` overrides → a config → a run folder (see
:mod:`resnetlab.train`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from resnetlab.cli.common import add_config_overrides, positive_int
from resnetlab.fileio import check_folder
from resnetlab.runtime.config import RECIPES, resolve_config

# Flag → dotted config key: the common settings get their own flags; --set reaches the rest.
TRAIN_FLAGS: dict[str, str] = {
    "model": "model.name",
    "data": "data.source",
    "epochs": "run.epochs",
    "iterations": "run.iterations",
    "batch_size": "data.batch_size",
    "lr": "optim.lr",
    "seed": "run.seed",
    "device": "run.device",
    "precision": "run.precision",
    "out": "run.out_dir",
    "name": "run.name",
    "time_limit": "run.time_limit_min",
    "minutes": "run.budget_min",
    "image_size": "data.image_size",
    "val_fraction": "data.val_fraction",
    "limit_per_class": "data.limit_per_class",
    "pretrained": "model.pretrained",
    "data_root": "data.root",
    "freeze_until": "model.freeze_until",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune a model",
        description="Train with a recipe (paper-cifar, paper-imagenet, finetune, fast or a "
        "YAML file); flags and --set section.key=value override it. --resume DIR continues "
        "a run exactly. Ctrl-C or SIGTERM saves a checkpoint first.",
    )
    p.add_argument("--recipe", default="fast", help=f"{', '.join(RECIPES)} or a .yaml file")
    p.add_argument("--model", help="model name (resnetlab models)")
    p.add_argument("--data", help="cifar10, cifar100, sample, or a folder / .tar(.gz) of images")
    p.add_argument("--data-root", help="where cifar10/cifar100 are (or are downloaded to)")
    p.add_argument("--download", action="store_true", help="download cifar10/cifar100")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--iterations", type=positive_int)
    p.add_argument("--time-limit", type=float, metavar="MIN", help="stop after MIN minutes")
    p.add_argument(
        "--minutes",
        type=float,
        metavar="MIN",
        help="size the schedule to finish in MIN wall minutes on this machine, timed from its "
        "warm-up (warmup-linear or cosine schedules, e.g. the fast recipe)",
    )
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--image-size", type=positive_int, help="model input side (resizes)")
    p.add_argument("--val-fraction", type=float, help="held-out share of train (default 0.1)")
    p.add_argument("--limit-per-class", type=positive_int, help="cap training images per class")
    p.add_argument(
        "--pretrained", help="weights to start from: a checkpoint, or a `resnetlab weights` name"
    )
    p.add_argument("--freeze-backbone", action="store_true", help="train only the head")
    p.add_argument(
        "--freeze-until",
        metavar="STAGE",
        help="freeze the stem and the stages up to STAGE (stem, layer1, …; BN kept in eval mode)",
    )
    p.add_argument("--no-test", action="store_true", help="skip the final test evaluation")
    p.add_argument("--out", help="folder for run folders (default: runs)")
    p.add_argument("--name", help="run folder name")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue a run (folder or .pt)")
    add_config_overrides(p, "any config value, e.g. optim.nesterov=true")
    p.set_defaults(func=cmd_train)


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, key in TRAIN_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = value
    if args.download:
        out["data.download"] = True
    if args.freeze_backbone:
        out["model.freeze_backbone"] = True
    if args.no_test:
        out["run.test"] = False
    out.update(dict(args.overrides))
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from resnetlab.cli.console import console_log
    from resnetlab.runtime.folder_layout import checkpoint_file
    from resnetlab.train.fitting import fit
    from resnetlab.train.start_or_resume import resume_config

    overrides = train_overrides(args)
    if args.resume is not None:
        overrides.pop("run.out_dir", None)  # the run continues in its own folder
        cfg = resume_config(args.resume, overrides)
        check_folder(checkpoint_file(args.resume).parent)
    else:
        cfg = resolve_config(args.recipe, overrides)
        check_folder(cfg.run.out_dir)  # now, not after the first epoch
    with console_log():
        result = fit(cfg, resume=args.resume, command=args.command_line)
    print(f"run folder: {result.run_dir} (report.md, curves.png, best.pt, last.pt)")
    return result.exit_code
