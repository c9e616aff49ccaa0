"""The ``resnetlab`` command: subcommands → options → library calls, nothing more.

Every error a user can cause (unknown model, malformed size, unwritable output) prints
one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from resnetlab import __version__
from resnetlab.analysis.charts import check_chart_path, plot_depth_sweep, plot_stages
from resnetlab.analysis.compare import compare, default_input_size
from resnetlab.analysis.counting import ShapeError
from resnetlab.analysis.formulas import formulas
from resnetlab.analysis.summary import FORMATS, summarize
from resnetlab.analysis.tour import tour
from resnetlab.cli_reproduce import add_parser as add_reproduce_parser
from resnetlab.cli_train import add_parsers as add_train_parsers
from resnetlab.data.tensors import DataError
from resnetlab.fileio import check_writable, write_text_atomic
from resnetlab.infer.explain import MissingExtraError
from resnetlab.models.registry import build, model_entries, model_spec
from resnetlab.runtime.checkpoint import CheckpointError
from resnetlab.runtime.config import ConfigError

EXIT_USAGE = 2


class UsageError(Exception):
    """A user error: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``resnetlab summary: error: …``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word: a string option such as placement=v1.5
    return key.strip().replace("-", "_"), value


def _model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model options (override the named model's spec)")
    g.add_argument("--placement", choices=("v1", "v1.5"), help="bottleneck stride placement")
    g.add_argument("--shortcut", choices=("A", "B", "C"), help="shortcut option (paper §3.3)")
    g.add_argument("--num-classes", type=_positive_int, help="classifier outputs")
    g.add_argument("--in-channels", type=_positive_int, help="input channels")
    g.add_argument(
        "--set",
        dest="overrides",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other spec field, e.g. --set kernel_size=5 --set head=mlp",
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = dict(args.overrides)
    for key in ("placement", "shortcut", "num_classes", "in_channels"):
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    return out


def _input_size_arg(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument(
        "--input-size",
        type=_positive_int,
        nargs="+",
        metavar="N",
        help=f"input shape N C H W (default: one image at native size; e.g. {example})",
    )


def _format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="text", help="output format")
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(output, text)
        print(f"wrote {output}")


def _meta_model(name: str, overrides: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    spec = model_spec(name, **overrides)
    with torch.device("meta"):  # analysis needs shapes only
        return build(spec), spec


# ---------------------------------------------------------------------- commands
def cmd_models(args: argparse.Namespace) -> None:
    entries = model_entries(args.pattern)
    if not entries:
        raise UsageError(f"no model matches {args.pattern!r}")
    if args.format == "text" and not args.details:
        width = max(len(e.name) for e in entries)
        _emit(
            "".join(f"{e.name:<{width}}  {e.family:<8}  {e.description}\n" for e in entries),
            args.output,
        )
        return
    rows = []
    for e in entries:
        row = compare(e.name).rows[0]
        spec = e.spec
        rows.append(
            {
                "name": e.name,
                "family": e.family,
                "depth": row.depth,
                "params": row.params,
                "conv_linear_macs": row.conv_macs,
                "input": "×".join(map(str, row.input_size)),
                "placement": getattr(spec, "placement", "")
                if getattr(spec, "block", "") == "bottleneck"
                else "",
                "shortcut": _shortcut(spec),
                "description": e.description,
            }
        )
    _emit(_table(rows, args.format), args.output)


def _shortcut(spec: Any) -> str:
    if not hasattr(spec, "residual"):
        return ""
    return spec.shortcut if spec.residual else "none"


def _table(rows: list[dict[str, Any]], fmt: str) -> str:
    import csv
    import io
    import json

    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    head = ["Model", "Family", "Depth", "Params", "MACs", "Input", "Placement", "Shortcut"]
    body = [
        [
            r["name"],
            r["family"],
            str(r["depth"]),
            f"{r['params']:,}",
            f"{r['conv_linear_macs'] / 1e9:.3f} G",
            r["input"],
            r["placement"],
            r["shortcut"],
        ]
        for r in rows
    ]
    if fmt == "md":
        lines = ["| " + " | ".join(head) + " |", "|---|---|---:|---:|---:|---|---|---|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    return "".join(
        "  ".join(
            c.ljust(w) if i in (0, 1, 5, 6, 7) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        + "\n"
        for cells in [head, *body]
    )


def cmd_summary(args: argparse.Namespace) -> None:
    if args.output is not None:
        check_writable(args.output)
    model, spec = _meta_model(args.model, _overrides(args))
    size = tuple(args.input_size) if args.input_size else default_input_size(spec)
    s = summarize(model, size, depth=args.depth, title=args.model)
    _emit(s.render(args.format), args.output)


def cmd_compare(args: argparse.Namespace) -> None:
    if args.output is not None:
        check_writable(args.output)
    overrides = _overrides(args)
    items: list[Any] = []
    for name in args.models:
        model, spec = _meta_model(name, overrides)
        size = tuple(args.input_size) if args.input_size else default_input_size(spec)
        items.append((name, model, size))
    table = compare(*items, title="Comparison")
    _emit(table.render(args.format, formulas=args.formulas), args.output)


def cmd_params(args: argparse.Namespace) -> None:
    if args.output is not None:
        check_writable(args.output)
    model, _ = _meta_model(args.model, _overrides(args))
    rows = formulas(model)
    total = sum(f.count for f in rows)
    if args.format == "json":
        import json

        data = {
            "model": args.model,
            "total": total,
            "layers": [
                {"name": f.name, "type": f.type, "formula": f.expression, "params": f.count}
                for f in rows
            ],
        }
        _emit(json.dumps(data, indent=2) + "\n", args.output)
        return
    if args.format == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", "type", "formula", "params"])
        w.writerows([f.name, f.type, f.expression, f.count] for f in rows)
        _emit(buf.getvalue(), args.output)
        return
    if not args.formulas:
        by_type: dict[str, int] = {}
        for f in rows:
            by_type[f.type] = by_type.get(f.type, 0) + f.count
        lines = [f"{args.model}: {total:,} parameters"]
        lines += [f"  {t:<12} {n:>14,}" for t, n in by_type.items()]
        _emit("\n".join(lines) + "\n", args.output)
        return
    if args.format == "md":
        lines = ["| Layer | Type | Formula | Params |", "|---|---|---|---:|"]
        lines += [f"| `{f.name}` | {f.type} | {f.expression} | {f.count:,} |" for f in rows]
        lines.append(f"| **total** | | | **{total:,}** |")
    else:
        width = max(len(f.name) for f in rows)
        lines = [f"{f.name:<{width}}  {f.text}" for f in rows]
        lines.append(f"{'total':<{width}}  {total:,}")
    _emit("\n".join(lines) + "\n", args.output)


def cmd_plot(args: argparse.Namespace) -> None:
    check_chart_path(args.output)
    kind = args.kind or ("stages" if len(args.models) == 1 else "sweep")
    if kind == "stages":
        if len(args.models) != 1:
            raise UsageError("--kind stages plots one model; give exactly one")
        model, spec = _meta_model(args.models[0], _overrides(args))
        size = tuple(args.input_size) if args.input_size else default_input_size(spec)
        plot_stages(model, size, args.output, title=args.models[0])
    else:
        if _overrides(args):
            raise UsageError("model options apply to --kind stages only")
        for name in args.models:
            model_spec(name)  # unknown names fail before any work
        plot_depth_sweep(args.models, args.output, input_size=args.input_size)
    print(f"wrote {args.output}")


def cmd_weights(args: argparse.Namespace) -> None:
    from resnetlab.models.weights import list_weights

    entries = list_weights(args.pattern)
    if not entries:
        raise UsageError(f"no published weights match {args.pattern!r}")
    if args.format == "json":
        import dataclasses
        import json

        rows = [dataclasses.asdict(w) for w in entries]
        _emit(json.dumps(rows, indent=2) + "\n", args.output)
        return
    blocks = []
    for w in entries:
        top = w.published()
        blocks.append(
            f"{w.name}  →  {w.model} ({w.layout} layout, {w.num_classes} classes)\n"
            f"  url:        {w.url}\n"
            f"  sha256:     {w.sha256 + '…' if w.sha256 else 'none published'} ({w.file_format})\n"
            f"  preprocess: {w.preprocessing.describe()}\n"
            f"  published:  {top}\n"
            f"  classes:    {w.classes_source}\n"
            f"  licence:    {w.licence}\n"
        )
    _emit("\n".join(blocks), args.output)


def cmd_tour(args: argparse.Namespace) -> None:
    text, charts = tour(args.out)
    sys.stdout.write(text + "\n")
    for path in charts:
        print(f"chart: {path}")


# ---------------------------------------------------------------------- parser
def build_parser() -> Parser:
    parser = Parser(
        prog="resnetlab",
        description="Deep residual networks (He et al., 2015), exact: build, inspect, compare.",
    )
    parser.add_argument("--version", action="version", version=f"resnetlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser(
        "models",
        help="list the registered models",
        description=(
            "List registered models (shell-style PATTERN, e.g. 'resnet*'). --details adds depth, "
            "parameters and conv/linear MACs for one image at the model's native size."
        ),
    )
    p.add_argument("pattern", nargs="?", default="*", metavar="PATTERN")
    p.add_argument("--details", action="store_true", help="count parameters and MACs")
    _format_arg(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "summary",
        help="per-layer table of a model",
        description=(
            "Per-layer table (output shape, parameters, mult-adds) with totals and memory, "
            "as torchinfo prints it. Nothing is computed: the model runs on the meta device."
        ),
    )
    p.add_argument("model", metavar="MODEL")
    _input_size_arg(p, "--input-size 2 3 224 224")
    p.add_argument("--depth", type=_positive_int, default=3, help="nesting depth (default 3)")
    _format_arg(p)
    _model_options(p)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        "compare",
        help="compare models side by side",
        description=("Parameters, mult-adds, depth and activation memory of models side by side."),
    )
    p.add_argument("models", nargs="+", metavar="MODEL")
    _input_size_arg(p, "--input-size 1 3 224 224")
    p.add_argument("--formulas", action="store_true", help="show each parameter count as a sum")
    _format_arg(p)
    _model_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "params",
        help="parameter counts, with --formulas their derivation",
        description="Parameters per layer type; --formulas: the formula behind "
        "every layer's count (3×64×7×7 = 9,408; + 64 for a bias).",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--formulas", action="store_true", help="one formula per layer")
    _format_arg(p)
    _model_options(p)
    p.set_defaults(func=cmd_params)

    p = sub.add_parser(
        "plot",
        help="charts: cost per stage, or a depth sweep",
        description=(
            "One model: parameters and MACs per stage. Several models (or --kind sweep): "
            "parameters and MACs against depth. PNG or SVG by the file's suffix."
        ),
    )
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("-o", "--output", type=Path, required=True, help="chart file (.png or .svg)")
    p.add_argument("--kind", choices=("stages", "sweep"), help="default: by number of models")
    _input_size_arg(p, "--input-size 1 3 224 224")
    _model_options(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "weights",
        help="list the published weights our models load",
        description="The weights catalogue (shell-style PATTERN over names and models): URL, "
        "SHA-256, file format, key layout, preprocessing, published accuracy, classes and "
        "licence of each. Pass a name to --pretrained, eval, predict, export or bench.",
    )
    p.add_argument("pattern", nargs="?", default="*", metavar="PATTERN")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser(
        "tour",
        help="the analysis tour (ResNet-50 table, VGG vs ResNet parameter counts)",
        description="ResNet-50's table, the parameter counts behind ResNet's efficiency, plain vs "
        "residual, stride placement, and two charts.",
    )
    p.add_argument("--out", type=Path, default=None, help="folder for the charts (default: none)")
    p.set_defaults(func=cmd_tour)

    add_train_parsers(sub, _positive_int)
    add_reproduce_parser(sub, _positive_int)
    return parser


# Commands that run a model over many batches: they keep freed memory in the process
# (glibc would otherwise map and unmap every activation over 32 MiB on each call).
RUNS_MODELS = frozenset({"train", "eval", "predict", "bench", "reproduce", "quantize"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(argv) if argv is not None else sys.argv[1:]
    args = parser.parse_args(words)
    args.command_line = "resnetlab " + " ".join(words)  # recorded in training reports
    try:
        size = getattr(args, "input_size", None)
        if size is not None and len(size) != 4:
            raise UsageError(f"--input-size takes four numbers, N C H W; got {len(size)}")
        if args.command in RUNS_MODELS:
            from resnetlab.infer.memory import keep_freed_memory

            keep_freed_memory()  # the process is ours: reuse large activations, see the module
        code = args.func(args)
    except (
        UsageError,
        ShapeError,
        ConfigError,
        DataError,
        CheckpointError,
        MissingExtraError,
        ValueError,
        OSError,
    ) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"resnetlab {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves and exits)
        print(f"resnetlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `resnetlab models | head`
        sys.stderr.close()
        return 0
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
