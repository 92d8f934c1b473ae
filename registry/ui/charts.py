"""Gate evidence drawn as inline SVG, server-side: pure functions from numbers to an SVG string.

Drawn with the UI shell's primitives (`ui.svg`); every piece of text (class
names come from uploaded golden sets) goes through `draw.esc`.
"""

from __future__ import annotations

import math

from ui import svg as draw
from ui.svg import BAD, BAD_BG, GOOD, GRID, INK, MUTED

CANDIDATE, PRODUCTION = "#2f6fb0", "#b8c2cc"
PERCENTILE_SHADES = {"p50_ms": "#9cc3e6", "p95_ms": "#2f6fb0", "p99_ms": "#173f66"}


# ------------------------------------------------------------------ recall

def recall_chart(class_names, candidate, production=None, *, regressed=(), floor=None) -> str:
    """Per-class recall, candidate (blue) over production (grey); regressed classes on red.

    `candidate` and `production` are lists of fractions (None where a class
    has no examples); `regressed` holds the indexes the gate flagged.
    """
    regressed = set(regressed)
    left, plot, right, top, row = 130, 380, 120, 40, 30 if production else 22
    height = top + row * len(class_names) + 28

    def x(v):
        return left + plot * max(0.0, min(1.0, v))

    body = _legend(left, 14, [("candidate", CANDIDATE)] + ([("production", PRODUCTION)] if production else [])
                   + ([("regressed", BAD)] if regressed else []))
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(f'<line x1="{x(tick):.1f}" y1="{top - 4}" x2="{x(tick):.1f}" y2="{height - 24}" stroke="{GRID}"/>')
        body.append(draw.text(x(tick), height - 10, f"{tick:.0%}", anchor="middle", size=11, fill=MUTED))
    for index, name in enumerate(class_names):
        y = top + index * row
        flagged = index in regressed
        cand = candidate[index] if index < len(candidate) else None
        prod = production[index] if production and index < len(production) else None
        tip = f"{name}: candidate {draw.pct(cand)}" + (f", production {draw.pct(prod)}" if production else "")
        body.append(f'<g class="row{" regressed" if flagged else ""}" data-class="{draw.esc(name)}">'
                    f"<title>{draw.esc(tip)}</title>")
        if flagged:
            body.append(f'<rect x="0" y="{y - 2}" width="{left + plot + right}" height="{row - 2}" fill="{BAD_BG}"/>')
        body.append(draw.text(left - 8, y + (row - 2) / 2 + 2, draw.short(name), anchor="end",
                          fill=BAD if flagged else INK, weight="bold" if flagged else "normal"))
        bar_h = (row - 8) / (2 if production else 1)
        body.append(_bar(left, y + 2, cand, x, bar_h, BAD if flagged else CANDIDATE))
        if production:
            body.append(_bar(left, y + 2 + bar_h, prod, x, bar_h, PRODUCTION))
        label = draw.pct(cand)
        if flagged and cand is not None and prod is not None:
            label += f"  ▼ {(prod - cand) * 100:.1f} pts"
        body.append(draw.text(x(1.0) + 6, y + (row - 2) / 2 + 2, label, size=11,
                          fill=BAD if flagged else MUTED, weight="bold" if flagged else "normal"))
        body.append("</g>")
    if floor is not None:
        body.append(f'<line x1="{x(floor):.1f}" y1="{top - 4}" x2="{x(floor):.1f}" y2="{height - 24}" '
                    f'stroke="{INK}" stroke-dasharray="4 3"/>')
        body.append(draw.text(x(floor) - 4, top - 8, f"floor {floor:.0%}", anchor="end", size=11, fill=MUTED))
    return draw.document(left + plot + right, height, "Recall per class, candidate vs production", body)


def _bar(x0, y, value, x, height, color) -> str:
    if value is None:
        return draw.text(x0 + 4, y + height - 1, "n/a", size=10, fill=MUTED)
    return f'<rect x="{x0}" y="{y:.1f}" width="{x(value) - x0:.1f}" height="{height:.1f}" fill="{color}"/>'


def _legend(x, y, items) -> list[str]:
    out = []
    for label, color in items:
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>')
        out.append(draw.text(x + 14, y, label, size=11, fill=MUTED))
        x += 24 + 7 * len(label)
    return out


# --------------------------------------------------------------- confusion

def confusion_heatmap(class_names, matrix) -> str:
    """Confusion matrix, rows = true class, columns = predicted; shade = share of the true class.

    Correct predictions (the diagonal) are blue, mistakes red, so a cluster of
    red in one row is one class being confused with another.
    """
    n = len(class_names)
    cell = max(14, min(36, 420 // max(n, 1)))
    left, size = 120, cell * n
    top = 34 + 5 * min(max((len(str(c)) for c in class_names), default=1), 12)  # room for slanted labels
    body = [draw.text(left + size / 2, 12, "predicted class →", anchor="middle", size=11, fill=MUTED),
            draw.text(12, top + size / 2, "← true class", anchor="middle", size=11, fill=MUTED,
                  extra=f' transform="rotate(-90 12 {top + size / 2:.1f})"')]
    for j, name in enumerate(class_names):
        cx = left + j * cell + cell / 2
        body.append(draw.text(cx, top - 6, draw.short(name, 12), size=11,
                          extra=f' transform="rotate(-50 {cx:.1f} {top - 6})"'))
    for i, name in enumerate(class_names):
        row = matrix[i] if i < len(matrix) else []
        total = sum(row) or 1
        body.append(draw.text(left - 6, top + i * cell + cell / 2 + 4, draw.short(name), anchor="end", size=11))
        for j in range(n):
            count = row[j] if j < len(row) else 0
            share = count / total
            color, ink = _cell_color(i == j, share, count)
            tip = f"true {name} → predicted {class_names[j]}: {count} ({share:.1%} of {name})"
            body.append(f'<g><title>{draw.esc(tip)}</title><rect x="{left + j * cell}" y="{top + i * cell}" '
                        f'width="{cell - 1}" height="{cell - 1}" fill="{color}"/>')
            if count and cell >= 22:
                body.append(draw.text(left + j * cell + cell / 2, top + i * cell + cell / 2 + 4, count,
                                  anchor="middle", size=11 if cell >= 30 else 9, fill=ink))
            body.append("</g>")
    return draw.document(left + size + 12, top + size + 12, "Confusion matrix: true class by predicted class", body)


def _cell_color(diagonal: bool, share: float, count: int) -> tuple[str, str]:
    if count == 0:
        return "#f5f7fa", MUTED
    base = (47, 111, 176) if diagonal else (192, 57, 43)
    strength = 0.2 + 0.8 * share
    r, g, b = (round(255 - (255 - c) * strength) for c in base)
    return f"#{r:02x}{g:02x}{b:02x}", "#ffffff" if strength > 0.55 else INK


# ----------------------------------------------------------------- latency

def latency_chart(groups, *, budget_ms=None, budget_label="") -> str:
    """p50/p95/p99 bars per group (batch size, or fp32/int8), with the SLO budget as a dashed line.

    `groups` is a list of (label, {"p50_ms", "p95_ms", "p99_ms"}). When the
    values span more than two decades (a fast model under a generous budget)
    the axis is logarithmic, and says so.
    """
    keys = list(PERCENTILE_SHADES)
    values = [stats.get(k) for _, stats in groups for k in keys if stats.get(k)]
    if not values:
        return draw.document(300, 40, "No latency measured", [draw.text(8, 24, "no latency measured", fill=MUTED)])
    hi = max(values + ([budget_ms] if budget_ms else []))
    lo = min(values + ([budget_ms] if budget_ms else []))
    log = hi / lo > 100
    left, top, plot_h, bar_w, gap = 64, 36, 200, 34, 30
    width = left + len(groups) * (3 * bar_w + gap) + 200
    axis_lo, axis_hi, ticks = draw.log_axis(lo, hi) if log else (0.0, draw.nice_ceiling(hi * 1.1), None)
    ticks = ticks or [axis_hi * f for f in (0, 0.25, 0.5, 0.75, 1.0)]

    def y(v):
        if log:
            frac = (math.log10(max(v, axis_lo)) - math.log10(axis_lo)) / (math.log10(axis_hi) - math.log10(axis_lo))
        else:
            frac = v / axis_hi
        return top + plot_h * (1 - max(0.0, min(1.0, frac)))

    body = _legend(left, 14, [(k.removesuffix("draw.ms"), PERCENTILE_SHADES[k]) for k in keys])
    body.append(draw.text(width - 8, 14, "log scale" if log else "", anchor="end", size=11, fill=MUTED))
    for tick in ticks:
        body.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{width - 190}" y2="{y(tick):.1f}" stroke="{GRID}"/>')
        body.append(draw.text(left - 6, y(tick) + 4, f"{draw.ms(tick)} ms", anchor="end", size=11, fill=MUTED))
    for g, (label, stats) in enumerate(groups):
        x0 = left + 10 + g * (3 * bar_w + gap)
        for k, key in enumerate(keys):
            value = stats.get(key)
            if value is None:
                continue
            over = budget_ms is not None and key == "p95_ms" and value > budget_ms and label == budget_label
            bx = x0 + k * bar_w
            body.append(f'<g><title>{draw.esc(f"{label} {key[:-3]}: {draw.ms(value)} ms")}</title>'
                        f'<rect x="{bx}" y="{y(value):.1f}" width="{bar_w - 3}" height="{top + plot_h - y(value):.1f}" '
                        f'fill="{BAD if over else PERCENTILE_SHADES[key]}"/></g>')
            body.append(draw.text(bx + (bar_w - 3) / 2, y(value) - 3, draw.ms(value), anchor="middle", size=9, fill=MUTED))
        body.append(draw.text(x0 + 1.5 * bar_w, top + plot_h + 16, label, anchor="middle", size=11))
    if budget_ms is not None:
        by = y(budget_ms)
        body.append(f'<line x1="{left}" y1="{by:.1f}" x2="{width - 190}" y2="{by:.1f}" stroke="{BAD}" '
                    f'stroke-width="1.5" stroke-dasharray="6 4"/>')
        text = f"p95 budget {draw.ms(budget_ms)} ms" + (f" ({budget_label})" if budget_label else "")
        body.append(draw.text(width - 186, by + 4, text, size=11, fill=BAD, weight="bold"))
    return draw.document(width, top + plot_h + 26, "Latency percentiles with the p95 budget", body)


# ------------------------------------------------------------ quantization

def delta_chart(class_names, deltas, *, limit=None) -> str:
    """Per-class recall change int8 minus fp32, diverging around zero; losses red, gains green.

    `deltas` are fractions (None where undefined); `limit`, when known, is
    the largest allowed loss, drawn as a dashed line on the loss side.
    """
    left, half, right, top, row = 130, 170, 90, 34, 22
    reach = max([abs(d) for d in deltas if d is not None] + [limit or 0, 0.02]) * 1.15
    zero = left + half

    def x(d):
        return zero + half * max(-1.0, min(1.0, d / reach))

    height = top + row * len(class_names) + 26
    body = [draw.text(zero - half, 14, "◀ int8 loses recall", size=11, fill=BAD),
            draw.text(zero + half, 14, "int8 gains ▶", anchor="end", size=11, fill=GOOD),
            f'<line x1="{zero}" y1="{top - 6}" x2="{zero}" y2="{height - 22}" stroke="{INK}"/>']
    for tick in (-reach / 1.15, reach / 1.15):
        body.append(draw.text(x(tick), height - 8, f"{tick * 100:+.1f} pts", anchor="middle", size=11, fill=MUTED))
    for index, name in enumerate(class_names):
        y = top + index * row
        delta = deltas[index] if index < len(deltas) else None
        over = limit is not None and delta is not None and -delta > limit
        body.append(f'<g class="row{" over-limit" if over else ""}" data-class="{draw.esc(name)}">'
                    f"<title>{draw.esc(f'{name}: {_pts(delta)}')}</title>")
        if over:
            body.append(f'<rect x="0" y="{y - 2}" width="{left + 2 * half + right}" height="{row - 2}" '
                        f'fill="{BAD_BG}"/>')
        body.append(draw.text(left - 8, y + row / 2, draw.short(name), anchor="end", fill=BAD if over else INK))
        if delta is not None and delta != 0:
            x0, x1 = sorted((zero, x(delta)))
            body.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 1):.1f}" height="{row - 10}" '
                        f'fill="{BAD if delta < 0 else GOOD}"/>')
        elif delta == 0:
            body.append(f'<rect x="{zero - 1}" y="{y + 3}" width="3" height="{row - 10}" fill="{MUTED}"/>')
        body.append(draw.text(zero + half + 8, y + row / 2, _pts(delta), size=11, fill=BAD if over else MUTED))
        body.append("</g>")
    if limit is not None:
        body.append(f'<line x1="{x(-limit):.1f}" y1="{top - 6}" x2="{x(-limit):.1f}" y2="{height - 22}" '
                    f'stroke="{BAD}" stroke-dasharray="4 3"/>')
    return draw.document(left + 2 * half + right, height, "Recall change per class, int8 minus fp32", body)


def _pts(delta) -> str:
    if delta is None:
        return "n/a"
    return "±0.0 pts" if delta == 0 else f"{delta * 100:+.1f} pts"
