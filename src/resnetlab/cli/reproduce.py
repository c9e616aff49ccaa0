"""``reproduce``: the paper's experiments (see :mod:`resnetlab.experiments`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resnetlab.cli.common import UsageError, add_config_overrides, positive_int
from resnetlab.experiments.registry import experiments, get_experiment, list_experiments


def add_parser(sub: Any, whole_parser: Callable[[], argparse.ArgumentParser]) -> None:
    """``reproduce``; ``whole_parser`` makes the parser of every command (a ``--previous``
    report's command is read again with it)."""
    names = list_experiments()
    p = sub.add_parser(
        "reproduce",
        help="reproduce an experiment of the paper, with a report",
        description=", ".join(f"{e.name} ({e.source})" for e in experiments())
        + ". Runs are kept in OUT/runs and shared between "
        "experiments; running the same command again resumes an interrupted experiment. "
        "The report (Markdown, HTML, charts, JSON) goes to OUT/NAME.",
    )
    p.add_argument("experiment", choices=names, metavar="NAME", help=", ".join(names))
    _add_run_options(p)
    _add_store_options(p)
    _add_experiment_options(p)
    p.set_defaults(func=cmd_reproduce, whole_parser=whole_parser)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """What every run trains on, and with what schedule and precision."""
    p.add_argument("--data", default="cifar10", help="cifar10 or a CIFAR-10 folder/archive")
    p.add_argument("--data-root", help="where cifar10 lives (or is downloaded to)")
    p.add_argument("--depths", type=positive_int, nargs="+", help="network depths (6n+2)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (one run per seed and model)")
    p.add_argument(
        "--epochs",
        type=positive_int,
        help="epochs per run under the CPU budget protocol, the default (a linear warm-up "
        "and linear decay of the learning rate; default 10 epochs)",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help="the paper's step schedule instead: 64k iterations, lr 0.1 divided by 10 at 32k "
        "and 48k, weight decay 1e-4",
    )
    p.add_argument(
        "--iterations",
        type=positive_int,
        help="the paper's step schedule cut to this many iterations (the lr drops 10× at 1/2 "
        "and 3/4 of them)",
    )
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=float, help="peak learning rate (budget 0.2, paper 0.1)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--limit-per-class", type=positive_int, help="cap training images per class")


def _add_store_options(p: argparse.ArgumentParser) -> None:
    """Which runs the report is made from, where it goes, and settings for every run."""
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from the runs already finished in OUT/runs, training nothing "
        "(the report names the runs left out)",
    )
    p.add_argument(
        "--previous",
        type=Path,
        action="append",
        metavar="RESULTS_JSON",
        help="fold in the runs of an earlier report of this experiment (its results.json, "
        "e.g. made on another machine whose run store is gone): jobs the store has not "
        "finished take those runs instead of training; the protocol must be the same "
        "(cifar-table; repeatable)",
    )
    p.add_argument("--out", type=Path, default=Path("reproduce"), help="default: ./reproduce")
    add_config_overrides(p, "a training setting for every run, e.g. schedule.warmup_min_depth=20")


def _add_experiment_options(p: argparse.ArgumentParser) -> None:
    """The options of one experiment (landscape, lesion); the others refuse them."""
    # Defaults: each experiment's own (``Experiment.options``).
    g = p.add_argument_group("landscape and lesion")
    g.add_argument("--grid", type=positive_int, help="landscape: points per axis (odd; default 13)")
    g.add_argument("--span", type=float, help="landscape: α, β in [-SPAN, SPAN]")
    g.add_argument(
        "--images",
        type=positive_int,
        help="images evaluated per point (landscape: training images, default 1000; lesion: "
        "test images, default 2000)",
    )
    g.add_argument("--draws", type=positive_int, help="lesion: random draws per k")
    g.add_argument("--swaps", type=positive_int, help="lesion: most swaps tried")
    g.add_argument("--split", choices=("test", "val"), help="lesion: split")


def request_from_args(args: argparse.Namespace) -> Any:
    from resnetlab.experiments.base import Request
    from resnetlab.experiments.runs import BUDGET_EPOCHS, PAPER_ITERATIONS, Budget

    experiment = get_experiment(args.experiment)
    for key in sorted({k for e in experiments() for k in e.options} - set(experiment.options)):
        if getattr(args, key) is not None:
            owners = " and ".join(e.name for e in experiments() if key in e.options)
            raise UsageError(f"--{key} is the {owners}'s; {experiment.name} has no {key}")
    # NaN fails this too; past 1,000 filter-normalised steps every weight leaves fp32's range
    if args.span is not None and not 0 < args.span <= 1000:
        raise UsageError(f"--span must be a positive finite number up to 1000, got {args.span}")
    if args.paper and args.iterations:
        raise UsageError("give --paper or --iterations, not both")
    step = args.paper or args.iterations is not None
    if step and args.epochs:
        raise UsageError(
            "--epochs is the budget protocol's; --paper and --iterations count iterations"
        )
    depths = args.depths or experiment.depths
    bad = [d for d in depths if (d - 2) % 6]
    if bad:
        raise UsageError(f"depth {bad[0]} is not 6n+2 (20, 32, 44, 56, 110, …)")
    # A file or folder is named by its absolute path, so that a run is the same run
    # whichever directory the command is typed in (the store keys runs by their settings).
    data = str(Path(args.data).resolve()) if Path(args.data).exists() else args.data
    budget = Budget(
        protocol="step" if step else "budget",
        epochs=args.epochs or BUDGET_EPOCHS,
        iterations=args.iterations or PAPER_ITERATIONS,
        batch_size=args.batch_size,
        lr=args.lr,
        precision=args.precision,
        data=data,
        data_root=args.data_root,
        limit_per_class=args.limit_per_class,
        device=args.device,
        extra=dict(args.overrides),
    )
    request = Request(
        name=args.experiment,
        budget=budget,
        out=args.out,
        depths=list(depths),
        seeds=list(args.seeds if args.seeds is not None else experiment.seeds),
        command=args.command_line,
        report_only=args.report_only,
        options={
            k: default if getattr(args, k) is None else getattr(args, k)
            for k, default in experiment.options.items()
        },
    )
    for path in args.previous or []:
        request.earlier += _earlier_runs(path, request, args.whole_parser())
    return request


def _earlier_runs(path: Path, request: Any, parser: argparse.ArgumentParser) -> list[Any]:
    """The runs of the earlier report at ``path``, once its command (read again by
    ``parser``) is seen to be the same experiment under the same protocol as ``request``."""
    import dataclasses
    import shlex

    from resnetlab.experiments.earlier import earlier_command, earlier_runs

    command = earlier_command(path)
    words = shlex.split(command)
    try:
        args = parser.parse_args(words[1:])
        if getattr(args, "experiment", None) is None:
            raise SystemExit(2)
        args.command_line, args.previous = command, None
        before = request_from_args(args)
    except (SystemExit, UsageError) as err:
        why = f": {err}" if isinstance(err, UsageError) else ""
        raise UsageError(
            f"--previous {path}: its command is not one reproduce reads{why}"
        ) from None
    if before.name != request.name:
        raise UsageError(f"--previous {path} is a report of {before.name}, not of {request.name}")
    if before.budget != request.budget:
        differs = [
            f"{key} {there!r} there, {here!r} here"
            for key in (f.name for f in dataclasses.fields(request.budget))
            if (there := getattr(before.budget, key)) != (here := getattr(request.budget, key))
        ]
        raise UsageError(
            f"--previous {path}: its runs were trained under another protocol "
            f"({'; '.join(differs)})"
        )
    return earlier_runs(path)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from resnetlab.cli.console import console_log
    from resnetlab.experiments.driver import reproduce
    from resnetlab.experiments.runs import RunInterruptedError
    from resnetlab.train.fitting import EXIT_CODES

    req = request_from_args(args)
    try:
        with console_log():
            report = reproduce(req)
    except RunInterruptedError as err:
        print(f"resnetlab reproduce: {err}", file=sys.stderr)
        return EXIT_CODES.get(err.status, 1)
    print(f"report: {report / 'report.md'} and {report / 'report.html'}")
    return 0
