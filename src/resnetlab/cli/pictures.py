"""``plot --diagram`` (the paper's architecture figures, drawn from the spec) and
``explore`` (one self-contained HTML page: the diagram beside the layer tree)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from resnetlab.analysis.compare import default_input_size
from resnetlab.analysis.diagram import BLOCKS, block_diagram, diagram
from resnetlab.cli.common import (
    UsageError,
    input_size_arg,
    meta_model,
    model_options,
    model_overrides,
)
from resnetlab.fileio import check_writable


def diagram_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--diagram",
        action="store_true",
        help="draw the architecture (Fig. 3 style; several models side by side)",
    )
    p.add_argument(
        "--block",
        choices=tuple(BLOCKS),
        metavar="KIND",
        help=f"draw one block alone (Fig. 2 / Fig. 5): {', '.join(BLOCKS)}",
    )
    fold = p.add_mutually_exclusive_group()
    fold.add_argument(
        "--fold",
        dest="fold",
        action="store_const",
        const=True,
        help="fold repeated blocks into one ×n box (default: when a column passes 60 convs)",
    )
    fold.add_argument(
        "--no-fold", dest="fold", action="store_const", const=False, help="never fold"
    )


def _models(args: argparse.Namespace) -> list[tuple[str, Any, tuple[int, ...]]]:
    overrides = model_overrides(args)
    items = []
    for name in args.models:
        model, spec = meta_model(name, overrides)
        size = tuple(args.input_size) if args.input_size else default_input_size(spec)
        items.append((name, model, size))
    return items


def cmd_diagram(args: argparse.Namespace) -> None:
    if args.output.suffix.lower() not in (".svg", ".png"):
        raise UsageError(f"a diagram file must end in .svg or .png: {args.output}")
    check_writable(args.output)
    if args.block:
        if args.models:
            raise UsageError("--block draws one block alone: give no MODEL with it")
        d = block_diagram(args.block)
    else:
        if not args.models:
            raise UsageError("--diagram needs at least one MODEL (or --block KIND)")
        d = diagram(*_models(args), fold=args.fold)
    d.save(args.output)
    for note in d.notes:
        print(f"folded: {note}")
    print(f"wrote {args.output}")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "explore",
        help="one HTML page to explore a model (or two side by side)",
        description=(
            "Write one self-contained HTML page (no network): the architecture diagram beside "
            "the layer tree folded by stage and block, with output shapes, parameters, "
            "mult-adds and the formula of every count; click a box to open its rows. A "
            "second MODEL is shown beside the first, with the differences marked."
        ),
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="one model, or two to compare")
    p.add_argument("-o", "--output", type=Path, default=None, help="the page (default: MODEL.html)")
    input_size_arg(p, "--input-size 1 3 224 224")
    model_options(p)
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> None:
    from resnetlab.analysis.explorer import explore_page
    from resnetlab.fileio import write_text_atomic

    if len(args.models) > 2:
        raise UsageError("explore shows one model or two side by side; give one or two")
    out = args.output or Path(f"{args.models[0]}.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"the page must end in .html: {out}")
    check_writable(out)
    page = explore_page(*_models(args))
    write_text_atomic(out, page)
    print(f"wrote {out}")
