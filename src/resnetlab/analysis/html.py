"""HTML tables for notebooks (``_repr_html_``): escaped, styled inline, no scripts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

STYLE = (
    "<style>.rl-table{border-collapse:collapse;font-size:12px}"
    ".rl-table td,.rl-table th{padding:2px 8px;border-bottom:1px solid #ddd}"
    ".rl-table td.num,.rl-table th.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".rl-table caption{text-align:left;font-weight:bold;padding:4px 0}</style>"
)


def html_table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    caption: str = "",
    numeric: Sequence[int] = (),
    indent: Sequence[int] | None = None,
) -> str:
    """One escaped ``<table>``; columns in ``numeric`` align right; ``indent`` (one per row)
    indents the first cell, for nested layers."""
    num = set(numeric)

    def cls(i: int) -> str:
        return ' class="num"' if i in num else ""

    out = [STYLE, '<table class="rl-table">']
    if caption:
        out.append(f"<caption>{escape(caption)}</caption>")
    out.append(
        "<tr>" + "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(head)) + "</tr>"
    )
    for r, row in enumerate(rows):
        pad = indent[r] if indent else 0
        cells = []
        for i, c in enumerate(row):
            style = f' style="padding-left:{8 + 14 * pad}px"' if i == 0 and pad else ""
            cells.append(f"<td{cls(i)}{style}>{escape(c)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)
