"""What every command group shares: the parser class, option types and writers of output."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

import torch

from resnetlab.errors import InvalidValueError
from resnetlab.fileio import write_text_atomic
from resnetlab.models.registry import build, model_spec
from resnetlab.runtime.config import ConfigError
from resnetlab.runtime.yaml_text import parse_override, parse_value

EXIT_USAGE = 2


class UsageError(InvalidValueError):
    """Options that do not go together, or a value no option accepts (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``resnetlab summary: error: …``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _spec_option(text: str) -> tuple[str, Any]:
    """``--set KEY=VALUE`` of a model spec; the value is read as ``train --set`` reads its
    values (:func:`~resnetlab.runtime.yaml_text.parse_value`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = parse_value(raw, f"option {key.strip()}")
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return key.strip().replace("-", "_"), value


def model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model options (override the named model's spec)")
    g.add_argument("--placement", choices=("v1", "v1.5"), help="bottleneck stride placement")
    g.add_argument("--shortcut", choices=("A", "B", "C"), help="shortcut option (paper §3.3)")
    g.add_argument("--num-classes", type=positive_int, help="classifier outputs")
    g.add_argument("--in-channels", type=positive_int, help="input channels")
    g.add_argument(
        "--set",
        dest="overrides",
        type=_spec_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other spec field, e.g. --set kernel_size=5 --set head=mlp",
    )


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields the model options set."""
    out: dict[str, Any] = dict(args.overrides)
    for key in ("placement", "shortcut", "num_classes", "in_channels"):
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    return out


def input_size_arg(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument(
        "--input-size",
        type=positive_int,
        nargs="+",
        metavar="N",
        help=f"input shape N C H W (default: one image at native size; e.g. {example})",
    )


def format_arg(p: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    p.add_argument("--format", choices=formats, default="text", help="output format")
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")


def emit(text: str, output: Path | None) -> None:
    """``text`` to stdout, or atomically to ``output`` (and a line saying so)."""
    if output is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(output, text)
        print(f"wrote {output}")


def meta_model(name: str, overrides: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    """A named model on the meta device (analysis needs shapes only) and its spec. A
    ``resnetlab weights`` name stands for the net those weights fit (the entry's model,
    classes and options, e.g. chenyaofo's option-B shortcuts); ``overrides`` still win."""
    from resnetlab.interop.published import is_weights_name

    if is_weights_name(name):
        from resnetlab.interop.weights import get_weights

        w = get_weights(name)
        name, overrides = w.model, {**w.model_kwargs(), **overrides}
    spec = model_spec(name, **overrides)
    with torch.device("meta"):
        return build(spec), spec


def _config_override(text: str) -> tuple[str, Any]:
    try:
        return parse_override(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_config_overrides(p: argparse.ArgumentParser, example: str) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable) into ``args.overrides``."""
    p.add_argument(
        "--set",
        dest="overrides",
        type=_config_override,
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=example,
    )


def add_published_options(p: argparse.ArgumentParser, flag: str = "--model") -> None:
    """``--model``/``--layout`` for a published file the weights catalogue does not know."""
    p.add_argument(
        flag,
        dest="arch",
        metavar="NAME",
        help="model of a published file the catalogue does not know",
    )
    p.add_argument(
        "--layout",
        choices=("torchvision", "timm", "akamaster"),
        help="key layout of such a file, where its keys do not say",
    )


def say_published(predictor: Any) -> None:
    """One line on a published file: what it is and the preprocessing applied (stderr, so
    that --format json stays parseable)."""
    loaded = predictor.published
    if loaded is None:
        return
    what = loaded.weights.name if loaded.weights else f"{loaded.path.name} (not catalogued)"
    how = "assumed: the file does not say" if loaded.assumed else "the publisher's"
    print(
        f"{what}: {loaded.model_name}, {loaded.layout} layout; preprocessing ({how}): "
        f"{loaded.preprocessing.describe()}",
        file=sys.stderr,
    )
