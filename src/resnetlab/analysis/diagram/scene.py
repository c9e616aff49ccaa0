"""A drawing as plain shapes (boxes, texts, lines, arcs), written out as SVG by hand or as
PNG through matplotlib, so both files show the same picture. Coordinates are pixels, y down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from resnetlab.errors import InvalidValueError
from resnetlab.fileio import check_writable, save_figure, write_text_atomic

SUFFIXES = (".svg", ".png")
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

Attrs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    cls: str  # SVG class: "conv", "pool", "fc", "bn", "relu", "add", "fold", …
    fill: str
    attrs: Attrs = ()  # data-* attributes (the explorer finds its boxes by them)
    dashed: bool = False
    radius: float = 3.0


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    cls: str = "label"
    size: float = 11.0
    anchor: str = "middle"  # "start" | "middle" | "end"
    bold: bool = False
    colour: str = "#222"
    mono: bool = False  # a monospaced font, for aligned columns of formulas


@dataclass(frozen=True)
class Line:
    x0: float
    y0: float
    x1: float
    y1: float
    cls: str = "flow"
    colour: str = "#888"
    dashed: bool = False
    width: float = 1.0


@dataclass(frozen=True)
class Arc:
    """A shortcut: from (x, y0) out to the right by ``bulge`` and back in at (x, y1)."""

    x: float
    y0: float
    y1: float
    bulge: float
    cls: str  # "arc identity" | "arc projection" | "arc zero-pad"
    dashed: bool
    attrs: Attrs = ()


Shape = Box | Text | Line | Arc


@dataclass
class Scene:
    width: float
    height: float
    shapes: list[Box | Text | Line | Arc] = field(default_factory=list)

    def add(self, *shapes: Box | Text | Line | Arc) -> None:
        self.shapes.extend(shapes)


def _attrs(attrs: Attrs) -> str:
    return "".join(f' {k}="{escape(v)}"' for k, v in attrs)


def _svg_shape(s: Box | Text | Line | Arc) -> str:
    if isinstance(s, Box):
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        return (
            f'<rect class="{s.cls}" x="{s.x:.1f}" y="{s.y:.1f}" width="{s.w:.1f}" '
            f'height="{s.h:.1f}" rx="{s.radius}" fill="{s.fill}" stroke="#444"{dash}'
            f"{_attrs(s.attrs)}/>"
        )
    if isinstance(s, Text):
        weight = ' font-weight="bold"' if s.bold else ""
        weight += (
            ' font-family="DejaVu Sans Mono, monospace" xml:space="preserve"' if s.mono else ""
        )
        return (
            f'<text class="{s.cls}" x="{s.x:.1f}" y="{s.y:.1f}" font-size="{s.size}" '
            f'text-anchor="{s.anchor}" dominant-baseline="middle" fill="{s.colour}"{weight}>'
            f"{escape(s.text)}</text>"
        )
    if isinstance(s, Line):
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        return (
            f'<line class="{s.cls}" x1="{s.x0:.1f}" y1="{s.y0:.1f}" x2="{s.x1:.1f}" '
            f'y2="{s.y1:.1f}" stroke="{s.colour}" stroke-width="{s.width}"{dash}/>'
        )
    dash = ' stroke-dasharray="5 4"' if s.dashed else ""
    xb = s.x + s.bulge
    return (
        f'<path class="{s.cls}" d="M {s.x:.1f} {s.y0:.1f} C {xb:.1f} {s.y0:.1f} {xb:.1f} '
        f'{s.y1:.1f} {s.x:.1f} {s.y1:.1f}" fill="none" stroke="#222" stroke-width="1.4"{dash}'
        f"{_attrs(s.attrs)}/>"
    )


def to_svg(scene: Scene, *, title: str) -> str:
    """The scene as a standalone SVG document; every label stays a ``<text>`` element."""
    w, h = round(scene.width), round(scene.height)
    body = "\n".join(_svg_shape(s) for s in scene.shapes)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="{FONT}">\n'
        f"<title>{escape(title)}</title>\n"
        f'<rect class="background" x="0" y="0" width="{w}" height="{h}" fill="white"/>\n'
        f"{body}\n</svg>\n"
    )


def _draw_matplotlib(ax: object, s: Box | Text | Line | Arc) -> None:
    from matplotlib.patches import FancyBboxPatch, PathPatch
    from matplotlib.path import Path as MPath

    add_patch = ax.add_patch  # type: ignore[attr-defined]
    if isinstance(s, Box):
        add_patch(
            FancyBboxPatch(
                (s.x, s.y),
                s.w,
                s.h,
                boxstyle=f"round,pad=0,rounding_size={s.radius}",
                facecolor=s.fill,
                edgecolor="#444",
                linestyle="--" if s.dashed else "-",
                linewidth=0.8,
            )
        )
    elif isinstance(s, Text):
        ax.text(  # type: ignore[attr-defined]
            s.x,
            s.y,
            s.text,
            ha={"start": "left", "middle": "center", "end": "right"}[s.anchor],
            va="center",
            fontsize=s.size * 0.75,  # pixels at 100 dpi → points
            color=s.colour,
            weight="bold" if s.bold else "normal",
            family="monospace" if s.mono else "sans-serif",
        )
    elif isinstance(s, Line):
        ax.plot(  # type: ignore[attr-defined]
            [s.x0, s.x1], [s.y0, s.y1], color=s.colour, lw=s.width, ls="--" if s.dashed else "-"
        )
    else:
        xb = s.x + s.bulge
        verts = [(s.x, s.y0), (xb, s.y0), (xb, s.y1), (s.x, s.y1)]
        codes = [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4]
        add_patch(
            PathPatch(
                MPath(verts, codes),
                fill=False,
                lw=1.2,
                edgecolor="#222",
                ls="--" if s.dashed else "-",
            )
        )


def save(scene: Scene, path: str | os.PathLike[str], *, title: str) -> Path:
    """Write ``scene`` to ``path``: SVG by hand, PNG through matplotlib (atomically)."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise InvalidValueError(f"a diagram file must end in .svg or .png: {p}")
    check_writable(p)
    if p.suffix.lower() == ".svg":
        return write_text_atomic(p, to_svg(scene, title=title))
    # A bare Figure, not pyplot: saving a PNG in a notebook leaves its plotting backend alone.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(scene.width / 100, scene.height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, scene.width)
    ax.set_ylim(scene.height, 0)
    ax.axis("off")
    for s in scene.shapes:
        _draw_matplotlib(ax, s)
    return save_figure(fig, p, dpi=150)
