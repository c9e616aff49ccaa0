"""``models``, ``summary``, ``compare``, ``params``, ``plot``, ``weights``, ``tour``: what
a model is, counted on the meta device (see :mod:`resnetlab.analysis`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from resnetlab.analysis.charts import check_chart_path, plot_depth_sweep, plot_stages
from resnetlab.analysis.compare import compare, default_input_size
from resnetlab.analysis.formulas import formulas
from resnetlab.analysis.summary import FORMATS, summarize
from resnetlab.analysis.tour import tour
from resnetlab.cli import pictures
from resnetlab.cli.common import (
    UsageError,
    emit,
    format_arg,
    input_size_arg,
    meta_model,
    model_options,
    model_overrides,
    positive_int,
)
from resnetlab.fileio import check_writable
from resnetlab.models.registry import model_entries, model_spec


def add_parsers(sub: Any) -> None:
    _add_models(sub)
    _add_counting(sub)
    _add_catalogue(sub)
    pictures.add_parser(sub)


def _add_models(sub: Any) -> None:
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
    format_arg(p, FORMATS)
    p.set_defaults(func=cmd_models)


def _add_counting(sub: Any) -> None:
    """``summary``, ``compare``, ``params`` and ``plot``: one model or several, counted."""
    p = sub.add_parser(
        "summary",
        help="per-layer table of a model",
        description=(
            "Per-layer table (output shape, parameters, mult-adds) with totals and memory, "
            "as torchinfo prints it. Nothing is computed: the model runs on the meta device."
        ),
    )
    p.add_argument(
        "model", metavar="MODEL", help="a model, or a `resnetlab weights` name (its net)"
    )
    input_size_arg(p, "--input-size 2 3 224 224")
    p.add_argument("--depth", type=positive_int, default=3, help="nesting depth (default 3)")
    format_arg(p, FORMATS)
    model_options(p)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser(
        "compare",
        help="compare models side by side",
        description=("Parameters, mult-adds, depth and activation memory of models side by side."),
    )
    p.add_argument("models", nargs="+", metavar="MODEL")
    input_size_arg(p, "--input-size 1 3 224 224")
    p.add_argument("--formulas", action="store_true", help="show each parameter count as a sum")
    format_arg(p, FORMATS)
    model_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "params",
        help="parameter counts, with --formulas their derivation",
        description="Parameters per layer type; --formulas: the formula behind "
        "every layer's count (3×64×7×7 = 9,408; + 64 for a bias).",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--formulas", action="store_true", help="one formula per layer")
    format_arg(p, FORMATS)
    model_options(p)
    p.set_defaults(func=cmd_params)

    p = sub.add_parser(
        "plot",
        help="charts: cost per stage, a depth sweep; --diagram: the architecture (Fig. 3)",
        description=(
            "One model: parameters and MACs per stage. Several models (or --kind sweep): "
            "parameters and MACs against depth. --diagram: the architecture as the paper's "
            "Fig. 3 draws it (several models side by side; --block KIND: one block, Fig. 5). "
            "PNG or SVG by the file's suffix."
        ),
    )
    p.add_argument("models", nargs="*", metavar="MODEL")
    p.add_argument("-o", "--output", type=Path, required=True, help="chart file (.png or .svg)")
    p.add_argument("--kind", choices=("stages", "sweep"), help="default: by number of models")
    pictures.diagram_args(p)
    input_size_arg(p, "--input-size 1 3 224 224")
    model_options(p)
    p.set_defaults(func=cmd_plot)


def _add_catalogue(sub: Any) -> None:
    """``weights`` (the published weights catalogue) and ``tour``."""
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


def cmd_models(args: argparse.Namespace) -> None:
    entries = model_entries(args.pattern)
    if not entries:
        raise UsageError(f"no model matches {args.pattern!r}")
    if args.format == "text" and not args.details:
        width = max(len(e.name) for e in entries)
        emit(
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
    emit(_table(rows, args.format), args.output)


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
    model, spec = meta_model(args.model, model_overrides(args))
    size = tuple(args.input_size) if args.input_size else default_input_size(spec)
    s = summarize(model, size, depth=args.depth, title=args.model)
    emit(s.render(args.format), args.output)


def cmd_compare(args: argparse.Namespace) -> None:
    if args.output is not None:
        check_writable(args.output)
    overrides = model_overrides(args)
    items: list[Any] = []
    for name in args.models:
        model, spec = meta_model(name, overrides)
        size = tuple(args.input_size) if args.input_size else default_input_size(spec)
        items.append((name, model, size))
    table = compare(*items, title="Comparison")
    emit(table.render(args.format, formulas=args.formulas), args.output)


def cmd_params(args: argparse.Namespace) -> None:
    if args.output is not None:
        check_writable(args.output)
    model, _ = meta_model(args.model, model_overrides(args))
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
        emit(json.dumps(data, indent=2) + "\n", args.output)
        return
    if args.format == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", "type", "formula", "params"])
        w.writerows([f.name, f.type, f.expression, f.count] for f in rows)
        emit(buf.getvalue(), args.output)
        return
    if not args.formulas:
        by_type: dict[str, int] = {}
        for f in rows:
            by_type[f.type] = by_type.get(f.type, 0) + f.count
        lines = [f"{args.model}: {total:,} parameters"]
        lines += [f"  {t:<12} {n:>14,}" for t, n in by_type.items()]
        emit("\n".join(lines) + "\n", args.output)
        return
    if args.format == "md":
        lines = ["| Layer | Type | Formula | Params |", "|---|---|---|---:|"]
        lines += [f"| `{f.name}` | {f.type} | {f.expression} | {f.count:,} |" for f in rows]
        lines.append(f"| **total** | | | **{total:,}** |")
    else:
        width = max(len(f.name) for f in rows)
        lines = [f"{f.name:<{width}}  {f.text}" for f in rows]
        lines.append(f"{'total':<{width}}  {total:,}")
    emit("\n".join(lines) + "\n", args.output)


def cmd_plot(args: argparse.Namespace) -> None:
    if args.diagram or args.block:
        pictures.cmd_diagram(args)
        return
    if not args.models:
        raise UsageError("give at least one MODEL (or --diagram --block KIND)")
    check_chart_path(args.output)
    kind = args.kind or ("stages" if len(args.models) == 1 else "sweep")
    if kind == "stages":
        if len(args.models) != 1:
            raise UsageError("--kind stages plots one model; give exactly one")
        model, spec = meta_model(args.models[0], model_overrides(args))
        size = tuple(args.input_size) if args.input_size else default_input_size(spec)
        plot_stages(model, size, args.output, title=args.models[0])
    else:
        if model_overrides(args):
            raise UsageError("model options apply to --kind stages only")
        for name in args.models:
            model_spec(name)  # unknown names fail before any work
        plot_depth_sweep(args.models, args.output, input_size=args.input_size)
    print(f"wrote {args.output}")


def cmd_weights(args: argparse.Namespace) -> None:
    from resnetlab.interop.weights import list_weights

    entries = list_weights(args.pattern)
    if not entries:
        raise UsageError(f"no published weights match {args.pattern!r}")
    if args.format == "json":
        import dataclasses
        import json

        rows = [dataclasses.asdict(w) for w in entries]
        emit(json.dumps(rows, indent=2) + "\n", args.output)
        return
    blocks = []
    for w in entries:
        top = w.published()
        options = "".join(f", {k}={v}" for k, v in w.model_options)
        blocks.append(
            f"{w.name}  →  {w.model}{options} ({w.layout} layout, {w.num_classes} classes)\n"
            f"  url:        {w.url}\n"
            f"  sha256:     {w.sha256 + '…' if w.sha256 else 'none published'} ({w.file_format})\n"
            f"  preprocess: {w.preprocessing.describe()}\n"
            f"  published:  {top}\n"
            f"  classes:    {w.classes_source}\n"
            f"  licence:    {w.licence}\n"
        )
    emit("\n".join(blocks), args.output)


def cmd_tour(args: argparse.Namespace) -> None:
    text, charts = tour(args.out)
    sys.stdout.write(text + "\n")
    for path in charts:
        print(f"chart: {path}")
