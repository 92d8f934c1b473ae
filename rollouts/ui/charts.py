"""A rollout's analysis history drawn as inline SVG, server-side: pure functions from plain values.

One chart, three panels sharing one x axis (one column per analysis tick, in
order): the canary's error-budget burn rate per window pair against each
pair's threshold, the canary-vs-stable Bayes factor on a log scale against the
rollback line, and canary vs stable p95 against the SLO's latency threshold.
Each column is coloured by that tick's verdict (with a glyph, not colour
alone), so a reader sees when the rollout went wrong and which check said so.

Input is what `rollouts.ui.pages.analysis_ticks` reads out of stored
`AnalysisRun` rows; every text goes through `draw.esc`, numbers through `_num`.
"""

from __future__ import annotations

import math

from ui import svg as draw
from ui.svg import BAD, BAD_BG, GOOD, GRID, INK, MUTED

CANARY, STABLE = "#2f6fb0", "#7b8794"
PAIR_COLORS = ("#c05621", "#6b46c1", "#2c7a7b", "#975a16")
AMBER, AMBER_BG, GOOD_BG = "#8a5a00", "#fff4d6", "#e7f4ea"
VERDICT_STYLE = {  # strip colour, column background, glyph
    "pass": (GOOD, None, "✓"),
    "inconclusive": (AMBER, AMBER_BG, "?"),
    "fail": (BAD, BAD_BG, "✗"),
}
_UNKNOWN_STYLE = (MUTED, None, "·")

WIDTH, LEFT, RIGHT = 1100, 64, 190
PANEL_H, PANEL_GAP, TOP = 130, 46, 84
STRIP_Y = 42
# Values this many times past the highest threshold are drawn at the top edge (▲), their number in the tooltip.
CLIP_FACTOR = 4.0
MAX_LOG10_BF = 8


def _num(value) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value, suffix="") -> str:
    if value is None:
        return "no data"
    if abs(value) >= 1e5 or (value and abs(value) < 1e-2):
        return f"{value:.3g}{suffix}"
    return f"{value:.2f}".rstrip("0").rstrip(".") + suffix


def analysis_history_chart(ticks: list[dict], *, steps: list[dict] | None = None) -> str:
    """The burn-rate / Bayes-factor / p95 history of one rollout.

    `ticks` are dicts in time order: ``at`` (a short time label), ``step``,
    ``verdict``, ``reason``, ``pairs`` (a list of {long_s, short_s, threshold,
    long, short}), ``bf``, ``log10_bf``, ``bf_rollback``, ``bf_pass``,
    ``canary_p95_ms``, ``stable_p95_ms``, ``latency_threshold_ms``, ``failed``
    (names of failed checks). `steps` gives each step's weight for the labels.
    """
    if not ticks:
        return draw.document(360, 40, "No analysis has run yet", [draw.text(8, 24, "no analysis has run yet", fill=MUTED)])
    n = len(ticks)
    plot_w = WIDTH - LEFT - RIGHT
    col = plot_w / n
    height = TOP + 3 * PANEL_H + 2 * PANEL_GAP + 40
    bottom = TOP + 3 * PANEL_H + 2 * PANEL_GAP

    def cx(i):
        return LEFT + col * (i + 0.5)

    body = _legend_row(ticks)
    body += _columns(ticks, col, cx, bottom, steps or [])
    panels = [
        ("Error-budget burn rate of the canary (× budget)", _burn_panel),
        ("Canary vs stable errors: Bayes factor (log scale)", _bayes_panel),
        ("p95 latency, canary vs stable (ms)", _latency_panel),
    ]
    for index, (title, draw_panel) in enumerate(panels):
        top = TOP + index * (PANEL_H + PANEL_GAP)
        body.append(draw.text(LEFT, top - 8, title, size=12, weight="bold"))
        body.append(f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="{GRID}"/>')
        body += draw_panel(ticks, top, cx, col)
    body += _x_labels(ticks, cx, col, bottom)
    return draw.document(WIDTH, height, "Analysis history: burn rate, Bayes factor and p95 per analysis tick", body)


# ------------------------------------------------------------- chrome

def _legend_row(ticks) -> list[str]:
    counts = {v: sum(1 for t in ticks if t.get("verdict") == v) for v in VERDICT_STYLE}
    out, x = [], LEFT
    for verdict, (color, _, glyph) in VERDICT_STYLE.items():
        label = f"{glyph} {verdict} ({counts[verdict]})"
        out.append(f'<rect x="{x}" y="5" width="12" height="12" fill="{color}"/>')
        out.append(draw.text(x + 16, 15, label, size=11, fill=MUTED))
        x += 34 + 7 * len(label)
    out.append(draw.text(WIDTH - 8, 15, f"{len(ticks)} analysis tick{'s' if len(ticks) != 1 else ''}, oldest first",
                     anchor="end", size=11, fill=MUTED))
    return out


def _columns(ticks, col, cx, bottom, steps) -> list[str]:
    """Per tick: a verdict cell in the strip, a tinted column when not passing; step boundaries."""
    out, strip_y = [], STRIP_Y
    previous_step = object()
    starts = [i for i, t in enumerate(ticks) if i == 0 or t.get("step") != ticks[i - 1].get("step")]
    span = {i: ((starts + [len(ticks)])[k + 1] - i) * col for k, i in enumerate(starts)}
    for i, tick in enumerate(ticks):
        verdict = str(tick.get("verdict", ""))
        color, background, glyph = VERDICT_STYLE.get(verdict, _UNKNOWN_STYLE)
        x0 = LEFT + col * i
        tip = f"{tick.get('at', '')} · step {tick.get('step', '?')} · {verdict}: {tick.get('reason', '')}"
        out.append(f'<g class="tick v-{draw.esc(verdict)}" data-verdict="{draw.esc(verdict)}" data-at="{draw.esc(tick.get("at", ""))}">'
                   f"<title>{draw.esc(tip)}</title>")
        if background:
            out.append(f'<rect x="{x0:.1f}" y="{TOP}" width="{col:.1f}" height="{bottom - TOP:.1f}" '
                       f'fill="{background}" opacity="0.8"/>')
        out.append(f'<rect class="verdict-cell" x="{x0 + 0.5:.1f}" y="{strip_y}" width="{max(col - 1, 1):.1f}" '
                   f'height="14" fill="{color}"/>')
        if col >= 12:
            out.append(draw.text(cx(i), strip_y + 11, glyph, anchor="middle", size=10, fill="#ffffff", weight="bold"))
        out.append("</g>")
        if verdict == "fail":
            out.append(f'<line class="fail-mark" x1="{cx(i):.1f}" y1="{strip_y + 14}" x2="{cx(i):.1f}" y2="{bottom}" '
                       f'stroke="{BAD}" stroke-width="1.5"/>')
        step = tick.get("step")
        if step != previous_step:
            x = LEFT + col * i
            if i:
                out.append(f'<line class="step-start" x1="{x:.1f}" y1="{strip_y - 14}" x2="{x:.1f}" y2="{bottom}" '
                           f'stroke="{INK}" stroke-width="1" stroke-dasharray="2 3"/>')
            weight = _step_weight(steps, step)
            label = f"step {step}" + (f" · {weight}%" if weight is not None else "")
            if span[i] < 7 * len(label):
                label = str(step) if span[i] >= 12 else ""
            out.append(draw.text(x + 3, strip_y - 4, label, size=10, fill=INK, weight="bold"))
            previous_step = step
    return out


def _step_weight(steps, step):
    if isinstance(step, int) and 0 <= step < len(steps):
        return steps[step].get("weight")
    return None


def _x_labels(ticks, cx, col, bottom) -> list[str]:
    out, last_x = [], -1e9
    n = len(ticks)
    for i, tick in enumerate(ticks):
        x = cx(i)
        must = i == n - 1 or tick.get("verdict") == "fail"
        if x - last_x < 52 and not must:
            continue
        if must and x - last_x < 52 and out:
            out.pop()  # the last label and a failing tick win over an ordinary one
        out.append(draw.text(x, bottom + 16, tick.get("at", ""), anchor="middle", size=10,
                         fill=BAD if tick.get("verdict") == "fail" else MUTED,
                         weight="bold" if tick.get("verdict") == "fail" else "normal"))
        last_x = x
    return out


def _threshold_line(y, top, label, color, dash="6 4", label_y=None) -> list[str]:
    y = max(top, min(top + PANEL_H, y))
    label_y = y if label_y is None else label_y
    line = (f'<line class="threshold" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="{color}" '
            f'stroke-width="1.5" stroke-dasharray="{dash}"/>')
    return [line,
            draw.text(WIDTH - RIGHT + 6, label_y + 4, label, size=11, fill=color, weight="bold")]


def _series(points, color, *, hollow=False, dash=None, name="") -> list[str]:
    """A line through (x, y, clipped, tip) points; None breaks the line. Clipped points are ▲ at the edge."""
    out, run = [], []

    def flush():
        if len(run) > 1:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.6"'
                       + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        run.clear()

    marks = []
    for point in points:
        if point is None:
            flush()
            continue
        x, y, clipped, tip = point
        run.append((x, y))
        if clipped:
            marks.append(f'<g class="point clipped" data-series="{draw.esc(name)}"><title>{draw.esc(tip)}</title>'
                         f'<path d="M{x - 4:.1f},{y + 3:.1f} L{x + 4:.1f},{y + 3:.1f} L{x:.1f},{y - 4:.1f} Z" '
                         f'fill="{color}"/></g>')
        else:
            fill = "#ffffff" if hollow else color
            marks.append(f'<g class="point" data-series="{draw.esc(name)}"><title>{draw.esc(tip)}</title>'
                         f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{fill}" stroke="{color}" '
                         f'stroke-width="1.5"/></g>')
    flush()
    return out + marks


def _linear_axis(top, values, guides):
    """(y function, ticks) for a linear axis from 0 that always shows `guides` and clips outliers."""
    guides = [g for g in guides if g is not None and g > 0]
    cap = max(guides) * CLIP_FACTOR if guides else None
    shown = [v for v in values if v is not None]
    if cap is not None:
        shown = [min(v, cap) for v in shown]
    hi = draw.nice_ceiling(max(shown + [g * 1.25 for g in guides] + [1e-9]) * 1.08)

    def y(v):
        return top + PANEL_H * (1 - max(0.0, min(1.0, v / hi)))

    return y, hi, [hi * f for f in (0, 0.25, 0.5, 0.75, 1.0)]


def _grid(top, ticks, y, fmt) -> list[str]:
    out = []
    for t in ticks:
        out.append(f'<line x1="{LEFT}" y1="{y(t):.1f}" x2="{WIDTH - RIGHT}" y2="{y(t):.1f}" stroke="{GRID}"/>')
        out.append(draw.text(LEFT - 6, y(t) + 4, fmt(t), anchor="end", size=10, fill=MUTED))
    return out


# ------------------------------------------------------------- panels

def _burn_panel(ticks, top, cx, col) -> list[str]:
    n_pairs = max((len(t.get("pairs") or []) for t in ticks), default=0)
    if n_pairs == 0:
        return [draw.text(LEFT + 10, top + PANEL_H / 2, "no burn-rate data in these analyses", fill=MUTED)]
    values, thresholds = [], []
    for t in ticks:
        for p in t.get("pairs") or []:
            values += [_num(p.get("long")), _num(p.get("short"))]
            thresholds.append(_num(p.get("threshold")))
    y, hi, grid = _linear_axis(top, values, thresholds)
    out = _grid(top, grid, y, lambda v: f"{v:g}×")
    used: list[float] = []
    for k in range(n_pairs):
        color = PAIR_COLORS[k % len(PAIR_COLORS)]
        last = next((t["pairs"][k] for t in reversed(ticks) if len(t.get("pairs") or []) > k), {})
        threshold = _num(last.get("threshold"))
        windows = f"{_fmt(_num(last.get('long_s')))}s/{_fmt(_num(last.get('short_s')))}s"
        if threshold is not None:
            label_y = y(threshold)
            while any(abs(label_y - taken) < 12 for taken in used):
                label_y += 12
            used.append(label_y)
            out += _threshold_line(y(threshold), top, f"{threshold:g}× · {windows}", color, label_y=label_y)
        for which, hollow, dash in (("long", False, None), ("short", True, "3 3")):
            points = []
            for i, t in enumerate(ticks):
                pairs = t.get("pairs") or []
                v = _num(pairs[k].get(which)) if len(pairs) > k else None
                if v is None:
                    points.append(None)
                    continue
                tip = (f"{t.get('at', '')}: {which} window {windows} burns {_fmt(v)}× "
                       f"(threshold {_fmt(threshold)}×)")
                points.append((cx(i), y(min(v, hi)), v > hi, tip))
            out += _series(points, color, hollow=hollow, dash=dash, name=f"burn-{k}-{which}")
    out.append(_note(top, "● long window  ○ short window · a pair fails when both are above its line"))
    return out


def _bayes_panel(ticks, top, cx, col) -> list[str]:
    logs = [_log10_bf(t) for t in ticks]
    rollback = next((_num(t.get("bf_rollback")) for t in reversed(ticks) if _num(t.get("bf_rollback"))), None)
    passing = next((_num(t.get("bf_pass")) for t in reversed(ticks) if _num(t.get("bf_pass"))), None)
    known = [v for v in logs if v is not None]
    guide_logs = [math.log10(g) for g in (rollback, passing) if g]
    lo = math.floor(min(known + guide_logs + [-1.0]))
    lo = max(lo, -6)
    hi = math.ceil(max([min(v, MAX_LOG10_BF) for v in known] + [g + 1 for g in guide_logs] + [1.0]))

    def y(v):
        return top + PANEL_H * (1 - max(0.0, min(1.0, (v - lo) / (hi - lo))))

    step = max(1, math.ceil((hi - lo) / 6))
    out = _grid(top, list(range(math.ceil(lo / step) * step, hi + 1, step)), y, _power_label)  # 1 is always a line
    if rollback:
        out += _threshold_line(y(math.log10(rollback)), top, f"roll back ≥ {_fmt(rollback)}", BAD)
    if passing:
        out += _threshold_line(y(math.log10(passing)), top, f"pass ≤ {_fmt(passing)}", GOOD, dash="2 3")
    points = []
    for i, (t, v) in enumerate(zip(ticks, logs)):
        if v is None:
            points.append(None)
            continue
        shown = max(lo, min(v, hi))
        tip = f"{t.get('at', '')}: Bayes factor {_fmt(_num(t.get('bf')) or 10 ** min(v, 300))}"
        points.append((cx(i), y(shown), v > hi, tip))
    out += _series(points, INK, name="bayes")
    out.append(_note(top, "evidence that the canary fails more often than its share of traffic"))
    return out


def _log10_bf(tick) -> float | None:
    value = _num(tick.get("log10_bf"))
    if value is not None:
        return value
    bf = _num(tick.get("bf"))
    return math.log10(bf) if bf and bf > 0 else None


def _power_label(exponent: int) -> str:
    if -2 <= exponent <= 3:
        return f"{10.0 ** exponent:g}"
    return f"1e{exponent}"


def _latency_panel(ticks, top, cx, col) -> list[str]:
    canary = [_num(t.get("canary_p95_ms")) for t in ticks]
    stable = [_num(t.get("stable_p95_ms")) for t in ticks]
    threshold = next((_num(t.get("latency_threshold_ms")) for t in reversed(ticks)
                      if _num(t.get("latency_threshold_ms"))), None)
    if not any(v is not None for v in canary + stable):
        out = [draw.text(LEFT + 10, top + PANEL_H / 2, "no latency data in these analyses", fill=MUTED)]
        return out
    y, hi, grid = _linear_axis(top, canary + stable, [threshold])
    out = _grid(top, grid, y, lambda v: f"{draw.ms(v)}" if v else "0")
    if threshold is not None:
        out += _threshold_line(y(threshold), top, f"SLO p95 {draw.ms(threshold)} ms", BAD)
    for name, values, color, hollow in (("stable", stable, STABLE, True), ("canary", canary, CANARY, False)):
        points = []
        for i, (t, v) in enumerate(zip(ticks, values)):
            if v is None:
                points.append(None)
                continue
            points.append((cx(i), y(min(v, hi)), v > hi, f"{t.get('at', '')}: {name} p95 {draw.ms(v)} ms"))
        out += _series(points, color, hollow=hollow, name=f"p95-{name}")
    x = WIDTH - RIGHT - 110
    out += [f'<circle cx="{x}" cy="{top - 12}" r="3" fill="{CANARY}"/>',
            draw.text(x + 7, top - 8, "canary", size=10, fill=MUTED),
            f'<circle cx="{x + 58}" cy="{top - 12}" r="3" fill="#ffffff" stroke="{STABLE}" stroke-width="1.5"/>',
            draw.text(x + 65, top - 8, "stable", size=10, fill=MUTED)]
    return out


def _note(top, text) -> str:
    return draw.text(WIDTH - RIGHT, top - 8, text, anchor="end", size=10, fill=MUTED)
