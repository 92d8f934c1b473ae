"""SVG primitives the web UI's charts are drawn with: plain functions from numbers and text to SVG strings.

No JavaScript and nothing fetched: a chart is a self-contained <svg> with a
<title> for screen readers and per-mark <title>s as hover tooltips. Every text
goes through `esc` (class names come from uploaded golden sets, reasons from
users), so a chart can be marked safe in a template.
"""

from __future__ import annotations

import math
from html import escape

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
INK, MUTED, GRID = "#1f2933", "#616e7c", "#e4e7eb"
BAD, BAD_BG, GOOD = "#c0392b", "#fdecea", "#2e8540"
LABEL_CHARS = 16


def esc(value) -> str:
    return escape(str(value), quote=True)


def short(name, limit: int = LABEL_CHARS) -> str:
    name = str(name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


def text(x, y, body, *, anchor="start", size=12, fill=INK, weight="normal", extra="") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}" '
            f'font-weight="{weight}"{extra}>{esc(body)}</text>')


def document(width: float, height: float, title: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" font-family="{esc(FONT)}">'
            f"<title>{esc(title)}</title>{''.join(body)}</svg>")


def pct(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2g}"


def nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= value)


def log_axis(lo: float, hi: float) -> tuple[float, float, list[float]]:
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return 10.0 ** first, 10.0 ** last, [10.0 ** e for e in range(first, last + 1)]
