"""One report, two renderings: Markdown for the docs and a static HTML page for a browser.

A report is a list of blocks (headings, paragraphs, tables, figures, code) built by an
experiment; :class:`Report` writes ``report.md``, ``report.html`` and ``results.json`` into
the report folder, each atomically. Every report closes with where its numbers come from: the
command, the shared training settings, the code version, the hardware, the data rendition,
and each run's seed and wall time.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resnetlab.experiments.runs import RunRecord
from resnetlab.fileio import pyplot, save_figure, write_text_atomic
from resnetlab.runtime.execution import code_version
from resnetlab.runtime.folder_layout import RunFolder

Cell = str | int | float


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Figure:
    stem: str  # charts are <stem>.png and <stem>.svg in the report folder
    caption: str


Block = tuple[str, Any]  # ("h2" | "p" | "table" | "figure" | "code", payload)


def _cell(value: Cell) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass
class Report:
    title: str
    folder: Path
    blocks: list[Block] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)  # results.json

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, table: Table) -> None:
        self.blocks.append(("table", table))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def figure(self, fig: Any, stem: str, caption: str) -> None:
        """Save a matplotlib figure as PNG and SVG and place it in the report."""
        self.folder.mkdir(parents=True, exist_ok=True)
        save_figure(fig, self.folder / f"{stem}.png")
        save_figure(fig, self.folder / f"{stem}.svg")
        pyplot().close(fig)
        self.blocks.append(("figure", Figure(stem, caption)))

    # ------------------------------------------------------------------ rendering
    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind == "h2":
                out += [f"## {body}", ""]
            elif kind == "p":
                out += [body, ""]
            elif kind == "code":
                out += ["```", body.rstrip(), "```", ""]
            elif kind == "figure":
                out += [f"![{body.caption}]({body.stem}.png)", "", f"*{body.caption}*", ""]
            elif kind == "table":
                t: Table = body
                if t.caption:
                    out += [t.caption, ""]
                out.append("| " + " | ".join(t.header) + " |")
                out.append("|" + "|".join("---" for _ in t.header) + "|")
                out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
                out.append("")
        return "\n".join(out)

    def html(self) -> str:
        e = html.escape
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(self.title)}</title>",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<style>{_CSS}</style></head><body><main>",
            f"<h1>{e(self.title)}</h1>",
        ]
        for kind, body in self.blocks:
            if kind == "h2":
                parts.append(f"<h2>{e(body)}</h2>")
            elif kind == "p" and all(line.startswith("- ") for line in body.splitlines()):
                items = "".join(f"<li>{_inline(line[2:])}</li>" for line in body.splitlines())
                parts.append(f"<ul>{items}</ul>")
            elif kind == "p":
                parts.append(f"<p>{_inline(body)}</p>")
            elif kind == "code":
                parts.append(f"<pre><code>{e(body.rstrip())}</code></pre>")
            elif kind == "figure":
                parts.append(
                    f'<figure><img src="{e(body.stem)}.svg" alt="{e(body.caption)}">'
                    f"<figcaption>{e(body.caption)} "
                    f'(<a href="{e(body.stem)}.png">PNG</a>, '
                    f'<a href="{e(body.stem)}.svg">SVG</a>)</figcaption></figure>'
                )
            elif kind == "table":
                t = body
                rows = "".join(
                    "<tr>" + "".join(f"<td>{_inline(_cell(c))}</td>" for c in row) + "</tr>"
                    for row in t.rows
                )
                head = "".join(f"<th>{e(h)}</th>" for h in t.header)
                caption = f"<caption>{_inline(t.caption)}</caption>" if t.caption else ""
                parts.append(
                    f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
                )
        parts.append("</main></body></html>")
        return "\n".join(parts) + "\n"

    def write(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.folder / "report.md", self.markdown())
        write_text_atomic(self.folder / "report.html", self.html())
        text = json.dumps(self.numbers, indent=2, default=str, allow_nan=True)
        write_text_atomic(self.folder / "results.json", text + "\n")
        return self.folder


def _inline(text: str) -> str:
    """Escape for HTML, rendering Markdown's `code` spans as <code>."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:0;background:#fafafa;color:#222}"
    "main{max-width:980px;margin:auto;padding:1.5em}"
    "table{border-collapse:collapse;margin:1em 0;font-size:.92em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "th{background:#eee}td:first-child,th:first-child{text-align:left}"
    "caption{caption-side:top;text-align:left;padding:.3em 0;font-style:italic}"
    "figure{margin:1em 0}img{max-width:100%;background:#fff;border:1px solid #ddd}"
    "figcaption{font-size:.9em;color:#555}"
    "pre{background:#f0f0f0;padding:.8em;overflow-x:auto;font-size:.85em}"
    "code{font-family:ui-monospace,monospace}"
)


# ---------------------------------------------------------------------- provenance
def data_rendition(source: str) -> str:
    """The data a run used: the source, and the file's size and SHA-256 when it is a file."""
    path = Path(source).expanduser()
    if not path.is_file():
        return source
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{source} ({path.stat().st_size / 1e6:.1f} MB, sha256 {h.hexdigest()[:16]}…)"


def provenance(report: Report, records: list[RunRecord], command: str | None) -> None:
    """The closing section: how every number in the report was made. Runs folded in from an
    earlier report (``--previous``) are listed with the code and hardware they were made with."""
    report.heading("How these numbers were made")
    own = [r for r in records if not r.earlier]
    code = code_version()
    report.para("\n".join(_provenance_lines(records, own, command, code)))
    if own:
        cfg = RunFolder(own[0].run_dir).settings()
        cfg["model"]["name"] = "(per run)"
        cfg["run"]["seed"] = "(per run)"
        cfg["run"]["name"] = "(per run)"
        report.para("Training settings shared by every run (`config.yaml` of each run folder):")
        report.code(yaml.safe_dump(cfg, sort_keys=False))
    report.table(_runs_table(records))
    report.numbers["provenance"] = {
        "command": command,
        "code": code,
        "runs": [_run_entry(r) for r in records],
    }


def _provenance_lines(
    records: list[RunRecord], own: list[RunRecord], command: str | None, code: str
) -> list[str]:
    """The command, the code, the hardware, device and data of the first run made here, the
    runs from earlier reports, the seeds and the total training time: one bullet each."""
    first = own[0] if own else (records[0] if records else None)
    # The runs' own code, where they recorded it (runs trained before they did, not).
    trained = sorted({str(r.results["code"]) for r in own if r.results.get("code")} - {code})
    with_code = f"{code} (this report); its runs were trained with {', '.join(trained)}"
    lines = [
        f"- command: `{command or 'library call'}`",
        f"- code: {with_code if trained else code}",
    ]
    if first is not None:
        res = first.results
        lines += [
            f"- hardware: {res.get('hardware', '?')}",
            f"- device and precision: {res.get('device', '?')}, {res.get('precision', '?')}"
            f"{' channels_last' if res.get('channels_last') else ''}",
            f"- data: {data_rendition(str(res.get('data', '?')))}",
        ]
    for source in sorted({r.earlier for r in records if r.earlier}):
        runs = [r for r in records if r.earlier == source]
        made = sorted(
            {f"{r.results.get('code', '?')} on {r.results.get('hardware', '?')}" for r in runs}
        )
        lines.append(
            f"- {len(runs)} run{'s' * (len(runs) != 1)} from the earlier report `{source}` "
            f"(not trained again; their run folders need not exist here): made with "
            f"{'; '.join(made)}"
        )
    seeds = sorted({r.seed for r in records})
    total = sum(r.wall_s for r in records)
    lines.append(
        f"- seeds: {', '.join(map(str, seeds))}; training wall time, all runs: {total / 60:.1f} min"
    )
    return lines


def _runs_table(records: list[RunRecord]) -> Table:
    """Every run behind the report, one a row."""
    return Table(
        ["run", "seed", "status", "epochs", "wall (min)", "folder"],
        [
            [
                r.model + _options_note(r),
                r.seed,
                str(r.results.get("status")),
                int(r.results.get("epochs", 0)),
                r.wall_s / 60,
                f"`{r.run_dir.name}`" + (" (earlier report)" if r.earlier else ""),
            ]
            for r in records
        ],
        caption="Every run behind this report (folders under the run store).",
    )


def _run_entry(r: RunRecord) -> dict[str, Any]:
    """One run in results.json, with the summary numbers an experiment whose report reads
    only those needs to fold it into a later report (:mod:`resnetlab.experiments.earlier`)."""
    test = r.results.get("test") or {}
    entry: dict[str, Any] = {
        "model": r.model,
        "seed": r.seed,
        "options": _options(r),
        "folder": str(r.run_dir),
        "wall_s": r.wall_s,
        "status": r.results.get("status"),
        "epochs": r.results.get("epochs"),
        "iterations": r.iterations,
        "test_top1": test.get("top1"),
        "best_val_top1": r.results.get("best_val_top1"),
        "images_per_s": r.images_per_s,
        **{k: r.results.get(k) for k in ("hardware", "device", "precision", "data")},
    }
    if r.earlier:
        entry |= {"earlier_report": r.earlier, "code": r.results.get("code")}
    elif r.results.get("code"):
        entry["code"] = r.results["code"]  # the code it was trained with
    return entry


def _options(record: RunRecord) -> dict[str, Any]:
    if record.earlier:
        return dict(record.options)
    return dict(RunFolder(record.run_dir).settings()["model"]["options"] or {})


def _options_note(record: RunRecord) -> str:
    return "".join(f" ({k}={v})" for k, v in sorted(_options(record).items()))
