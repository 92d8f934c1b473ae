"""A rollout's analysis history drawn as inline SVG, server-side: pure functions from plain values.

One chart, three panels sharing one x axis (one column per analysis tick, in
order): the canary's error-budget burn rate per window pair against each
pair's threshold, the canary-vs-stable Bayes factor on a log scale against the
rollback line, and canary vs stable p95 against the SLO's latency threshold.
Each column is coloured by that tick's verdict (with a glyph, not colour
alone), so a reader sees when the rollout went wrong and which check said so.

Input is what `rollouts.ui.pages.analysis_ticks` reads out of stored
`AnalysisRun` rows; every text goes through `draw.esc`, numbers through `_num`.

Each chart is drawn for a frame: `WIDE` for a desktop, `NARROW` for a phone
(390 px), where a shrunken wide drawing would put 4 px text on the screen. The
narrow frame keeps every label at 11 px or more and moves the threshold labels
from a right margin into the plot. Steps are numbered from 1, as everywhere in the UI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from ui import svg as draw
from ui.svg import BAD, BAD_BG, GOOD, GRID, INK, MUTED

CANARY, STABLE = "#2f6fb0", "#7b8794"
PAIR_COLORS = ("#c05621", "#6b46c1", "#2c7a7b", "#975a16")
AMBER, AMBER_BG, GOOD_BG = "#8a5a00", "#fff4d6", "#e7f4ea"
VERDICT_STYLE = {  # strip colour, column background, glyph
    "pass": (GOOD, None, "✓"),
    "inconclusive": (AMBER, AMBER_BG, "?"),
    "fail": (BAD, BAD_BG, "✗"),
    "invalid": ("#6b46c1", "#efe9fb", "!"),  # the traffic split is off: the experiment holds, never promotes
}
_UNKNOWN_STYLE = (MUTED, None, "·")

PANEL_H, PANEL_GAP, TOP = 130, 46, 84
STRIP_Y = 42
# Values this many times past the highest threshold are drawn at the top edge (▲), their number in the tooltip.
CLIP_FACTOR = 4.0
MAX_LOG10_BF = 8


@dataclass(frozen=True)
class Frame:
    """Where a chart is drawn: its width, margins and smallest text."""

    width: int
    left: int
    right: int
    small: int  # the smallest font size used
    labels_inside: bool  # threshold labels sit on their line inside the plot, not in a right margin
    top: int = TOP  # where the first panel starts; the narrow frame sets panel titles on their own line

    @property
    def plot_right(self) -> int:
        return self.width - self.right


WIDE = Frame(1100, 64, 190, 10, False)
# 340 px fits a 390 px phone at scale 1 (the page keeps 10 px of padding on each side and the card 10 more).
NARROW = Frame(340, 44, 10, 11, True, TOP + 10)


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


def analysis_history_chart(ticks: list[dict], *, steps: list[dict] | None = None, frame: Frame = WIDE) -> str:
    """The burn-rate / Bayes-factor / p95 history of one rollout.

    `ticks` are dicts in time order: ``at`` (a short time label), ``step``
    (its index), ``verdict``, ``reason``, ``pairs`` (a list of {long_s,
    short_s, threshold, long, short}), ``bf``, ``log10_bf``, ``bf_rollback``,
    ``bf_pass``, ``canary_p95_ms``, ``stable_p95_ms``,
    ``latency_threshold_ms``, ``failed`` (names of failed checks). `steps`
    gives each step's weight for the labels.
    """
    f = frame
    if not ticks:
        return draw.document(min(360, f.width), 40, "No analysis has run yet",
                             [draw.text(8, 24, "no analysis has run yet", fill=MUTED)])
    n = len(ticks)
    plot_w = f.plot_right - f.left
    col = plot_w / n
    height = f.top + 3 * PANEL_H + 2 * PANEL_GAP + 40
    bottom = f.top + 3 * PANEL_H + 2 * PANEL_GAP

    def cx(i):
        return f.left + col * (i + 0.5)

    body = _legend_row(ticks, f)
    body += _columns(ticks, col, cx, bottom, steps or [], f)
    panels = [
        ("Error-budget burn rate (× budget)" if f.labels_inside else
         "Error-budget burn rate of the canary (× budget)", _burn_panel),
        ("Canary vs stable errors: Bayes factor" if f.labels_inside else
         "Canary vs stable errors: Bayes factor (log scale)", _bayes_panel),
        ("p95 latency, canary vs stable (ms)", _latency_panel),
    ]
    for index, (title, draw_panel) in enumerate(panels):
        top = f.top + index * (PANEL_H + PANEL_GAP)
        body.append(draw.text(f.left if not f.labels_inside else 4, top - 8 - (14 if f.labels_inside else 0), title,
                              size=12, weight="bold"))
        body.append(f'<rect x="{f.left}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="{GRID}"/>')
        body += draw_panel(ticks, top, cx, col, f)
    body += _x_labels(ticks, cx, col, bottom, f)
    return draw.document(f.width, height, "Analysis history: burn rate, Bayes factor and p95 per analysis tick", body)


# ------------------------------------------------------------- chrome

def _legend_row(ticks, f) -> list[str]:
    counts = {v: sum(1 for t in ticks if t.get("verdict") == v) for v in VERDICT_STYLE}
    out, x = [], f.left if not f.labels_inside else 4
    for verdict, (color, _, glyph) in VERDICT_STYLE.items():
        label = f"{glyph} {verdict} ({counts[verdict]})" if not f.labels_inside else f"{glyph} {counts[verdict]}"
        out.append(f'<rect x="{x}" y="5" width="12" height="12" fill="{color}"/>')
        out.append(draw.text(x + 16, 15, label, size=11, fill=MUTED))
        x += 34 + 7 * len(label)
    out.append(draw.text(f.width - 8, 15, f"{len(ticks)} analysis tick{'s' if len(ticks) != 1 else ''}, oldest first"
                         if not f.labels_inside else f"{len(ticks)} ticks", anchor="end", size=11, fill=MUTED))
    return out


def _columns(ticks, col, cx, bottom, steps, f) -> list[str]:
    """Per tick: a verdict cell in the strip, a tinted column when not passing; step boundaries."""
    out, strip_y = [], STRIP_Y
    previous_step = object()
    starts = [i for i, t in enumerate(ticks) if i == 0 or t.get("step") != ticks[i - 1].get("step")]
    span = {i: ((starts + [len(ticks)])[k + 1] - i) * col for k, i in enumerate(starts)}
    for i, tick in enumerate(ticks):
        verdict = str(tick.get("verdict", ""))
        color, background, glyph = VERDICT_STYLE.get(verdict, _UNKNOWN_STYLE)
        x0 = f.left + col * i
        tip = f"{tick.get('at', '')} · step {_step_number(tick.get('step'))} · {verdict}: {tick.get('reason', '')}"
        out.append(f'<g class="tick v-{draw.esc(verdict)}" data-verdict="{draw.esc(verdict)}" data-at="{draw.esc(tick.get("at", ""))}">'
                   f"<title>{draw.esc(tip)}</title>")
        if background:
            out.append(f'<rect x="{x0:.1f}" y="{f.top}" width="{col:.1f}" height="{bottom - f.top:.1f}" '
                       f'fill="{background}" opacity="0.8"/>')
        out.append(f'<rect class="verdict-cell" x="{x0 + 0.5:.1f}" y="{strip_y}" width="{max(col - 1, 1):.1f}" '
                   f'height="14" fill="{color}"/>')
        if col >= 12:
            out.append(draw.text(cx(i), strip_y + 11, glyph, anchor="middle", size=max(10, f.small), fill="#ffffff",
                                 weight="bold"))
        out.append("</g>")
        if verdict == "fail":
            out.append(f'<line class="fail-mark" x1="{cx(i):.1f}" y1="{strip_y + 14}" x2="{cx(i):.1f}" y2="{bottom}" '
                       f'stroke="{BAD}" stroke-width="1.5"/>')
        step = tick.get("step")
        if step != previous_step:
            x = f.left + col * i
            if i:
                out.append(f'<line class="step-start" x1="{x:.1f}" y1="{strip_y - 14}" x2="{x:.1f}" y2="{bottom}" '
                           f'stroke="{INK}" stroke-width="1" stroke-dasharray="2 3"/>')
            weight = _step_weight(steps, step)
            label = f"step {_step_number(step)}" + (f" · {weight}%" if weight is not None else "")
            if span[i] < 7 * len(label):
                label = str(_step_number(step)) if span[i] >= 12 else ""
            out.append(draw.text(x + 3, strip_y - 4, label, size=f.small, fill=INK, weight="bold"))
            previous_step = step
    return out


def _step_number(step):
    """Step indexes are stored from 0; people read steps from 1."""
    return step + 1 if isinstance(step, int) else "?"


def _step_weight(steps, step):
    if isinstance(step, int) and 0 <= step < len(steps):
        return steps[step].get("weight")
    return None


def _x_labels(ticks, cx, col, bottom, f) -> list[str]:
    out, last_x = [], -1e9
    n = len(ticks)
    gap = 52 if f.small <= 10 else 60
    for i, tick in enumerate(ticks):
        x = cx(i)
        must = i == n - 1 or tick.get("verdict") == "fail"
        if x - last_x < gap and not must:
            continue
        if must and x - last_x < gap and out:
            out.pop()  # the last label and a failing tick win over an ordinary one
        x = min(max(x, f.left + 24), f.width - 26)  # a label at the edge stays on the drawing
        out.append(draw.text(x, bottom + 16, tick.get("at", ""), anchor="middle", size=f.small,
                             fill=BAD if tick.get("verdict") == "fail" else MUTED,
                             weight="bold" if tick.get("verdict") == "fail" else "normal"))
        last_x = x
    return out


def _threshold_line(y, top, label, color, f, dash="6 4", label_y=None) -> list[str]:
    y = max(top, min(top + PANEL_H, y))
    label_y = y if label_y is None else label_y
    line = (f'<line class="threshold" x1="{f.left}" y1="{y:.1f}" x2="{f.plot_right}" y2="{y:.1f}" stroke="{color}" '
            f'stroke-width="1.5" stroke-dasharray="{dash}"/>')
    if f.labels_inside:
        where = label_y - 4 if label_y - 14 > top else label_y + 13
        return [line, draw.text(f.plot_right - 4, where, label, anchor="end", size=11, fill=color, weight="bold",
                                extra=' paint-order="stroke" stroke="#ffffff" stroke-width="3"')]
    return [line, draw.text(f.plot_right + 6, label_y + 4, label, size=11, fill=color, weight="bold")]


def _series(points, color, *, hollow=False, dash=None, name="", radius=3.0) -> list[str]:
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
            fill = "none" if hollow else color
            marks.append(f'<g class="point" data-series="{draw.esc(name)}"><title>{draw.esc(tip)}</title>'
                         f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:g}" fill="{fill}" stroke="{color}" '
                         f'stroke-width="1.5"/></g>')
    flush()
    return out + marks


def _linear_axis(top, values, guides):
    """(y function, top value, ticks) for a linear axis from 0 that always shows `guides` and clips outliers."""
    guides = [g for g in guides if g is not None and g > 0]
    cap = max(guides) * CLIP_FACTOR if guides else None
    shown = [v for v in values if v is not None]
    if cap is not None:
        shown = [min(v, cap) for v in shown]
    hi = draw.nice_ceiling(max(shown + [g * 1.25 for g in guides] + [1e-9]) * 1.08)
    return _axis_from(top, hi)


def _axis_from(top, hi):
    def y(v):
        return top + PANEL_H * (1 - max(0.0, min(1.0, v / hi)))

    return y, hi, [hi * f for f in (0, 0.25, 0.5, 0.75, 1.0)]


def _grid(top, ticks, y, fmt, f) -> list[str]:
    out = []
    for t in ticks:
        out.append(f'<line x1="{f.left}" y1="{y(t):.1f}" x2="{f.plot_right}" y2="{y(t):.1f}" stroke="{GRID}"/>')
        out.append(draw.text(f.left - 4, y(t) + 4, fmt(t), anchor="end", size=f.small, fill=MUTED))
    return out


def _no_data(top, f, words) -> str:
    return draw.text(f.left + 8, top + PANEL_H / 2, words, size=max(12, f.small), fill=MUTED,
                     extra=' class="no-data"')


# ------------------------------------------------------------- panels

def _burn_panel(ticks, top, cx, col, f) -> list[str]:
    n_pairs = max((len(t.get("pairs") or []) for t in ticks), default=0)
    values, thresholds = [], []
    for t in ticks:
        for p in t.get("pairs") or []:
            values += [_num(p.get("long")), _num(p.get("short"))]
            thresholds.append(_num(p.get("threshold")))
    if n_pairs == 0 or all(v is None for v in values):
        # Burn rates are judged only on windows with enough canary requests; none had them yet.
        return [_no_data(top, f, "no data: too few canary requests to judge burn rate" if n_pairs
                         else "no data: no burn-rate check in these analyses")]
    y, hi, grid = _linear_axis(top, values, thresholds)
    out = _grid(top, grid, y, lambda v: f"{v:g}×", f)
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
            out += _threshold_line(y(threshold), top, f"{threshold:g}× · {windows}", color, f, label_y=label_y)
        # The short window is a ring drawn first, the long one a dot on top: equal values show both.
        for which, hollow, dash, radius in (("short", True, "3 3", 4.5), ("long", False, None, 2.5)):
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
            out += _series(points, color, hollow=hollow, dash=dash, name=f"burn-{k}-{which}", radius=radius)
    out.append(_note(top, "● long window  ○ short window · a pair fails when both are above its line"
                     if not f.labels_inside else "● long  ○ short window", f))
    return out


def _bayes_panel(ticks, top, cx, col, f) -> list[str]:
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
    out = _grid(top, list(range(math.ceil(lo / step) * step, hi + 1, step)), y, _power_label, f)  # 1 is a line
    if rollback:
        out += _threshold_line(y(math.log10(rollback)), top, f"roll back ≥ {_fmt(rollback)}", BAD, f)
    if passing:
        out += _threshold_line(y(math.log10(passing)), top, f"pass ≤ {_fmt(passing)}", GOOD, f, dash="2 3")
    if not known:
        out.append(_no_data(top, f, "no data: no error counts for both arms yet"))
        return out
    points = []
    for i, (t, v) in enumerate(zip(ticks, logs)):
        if v is None:
            points.append(None)
            continue
        shown = max(lo, min(v, hi))
        tip = f"{t.get('at', '')}: Bayes factor {_fmt(_num(t.get('bf')) or 10 ** min(v, 300))}"
        points.append((cx(i), y(shown), v > hi, tip))
    out += _series(points, INK, name="bayes")
    if not f.labels_inside:
        out.append(_note(top, "evidence that the canary fails more often than its share of traffic", f))
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


def _latency_panel(ticks, top, cx, col, f) -> list[str]:
    canary = [_num(t.get("canary_p95_ms")) for t in ticks]
    stable = [_num(t.get("stable_p95_ms")) for t in ticks]
    threshold = next((_num(t.get("latency_threshold_ms")) for t in reversed(ticks)
                      if _num(t.get("latency_threshold_ms"))), None)
    known = [v for v in canary + stable if v is not None]
    if not known:
        return [_no_data(top, f, "no data: no latency measured in these analyses")]
    # The axis fits the measured values: a 250 ms SLO over 1-4 ms answers would flatten them onto the axis.
    # The SLO's line is drawn when it lies within reach of the data, and named at the top edge otherwise.
    peak = max(known)
    on_scale = threshold is not None and threshold <= 3 * peak
    y, hi, grid = _axis_from(top, draw.nice_ceiling(max(known + ([threshold * 1.1] if on_scale else [])) * 1.1))
    out = _grid(top, grid, y, lambda v: f"{draw.ms(v)}" if v else "0", f)
    if threshold is not None and on_scale:
        out += _threshold_line(y(threshold), top, f"SLO p95 {draw.ms(threshold)} ms", BAD, f)
    elif threshold is not None:
        out.append(draw.text(f.plot_right - 4, top + 13, f"SLO p95 {draw.ms(threshold)} ms ↑ far above this scale",
                             anchor="end", size=11, fill=BAD, weight="bold", extra=' class="off-scale"'))
    for name, values, color, hollow in (("stable", stable, STABLE, True), ("canary", canary, CANARY, False)):
        points = []
        for i, (t, v) in enumerate(zip(ticks, values)):
            if v is None:
                points.append(None)
                continue
            points.append((cx(i), y(min(v, hi)), v > hi, f"{t.get('at', '')}: {name} p95 {draw.ms(v)} ms"))
        out += _series(points, color, hollow=hollow, name=f"p95-{name}", radius=4.5 if hollow else 2.5)
    x = f.plot_right - 118
    out += [f'<circle cx="{x}" cy="{top - 12}" r="3" fill="{CANARY}"/>',
            draw.text(x + 7, top - 8, "canary", size=f.small, fill=MUTED),
            f'<circle cx="{x + 60}" cy="{top - 12}" r="3" fill="#ffffff" stroke="{STABLE}" stroke-width="1.5"/>',
            draw.text(x + 67, top - 8, "stable", size=f.small, fill=MUTED)]
    return out


def _note(top, text, f) -> str:
    return draw.text(f.plot_right, top - 8, text, anchor="end", size=f.small, fill=MUTED)


# ------------------------------------------------------------- traffic

TRAFFIC_H, TRAFFIC_TOP = 150, 30


def traffic_chart(intended: list[tuple[datetime, float]], observed: list[tuple[datetime, float, str]], *,
                  start: datetime, end: datetime, steps: list[tuple[datetime, str]] = (),
                  frame: Frame = WIDE) -> str:
    """The canary's share of traffic over time: asked for (a step line) and served (dots), 0-100 %.

    `intended` are (when, percent) changes of the weight the controller set;
    `observed` are (when, percent, tip) per analysis, the share of requests the
    canary really served in that step's window; `steps` are (when, label) at
    each step's start. Replica ratios only approximate a weight, so the two differ.
    """
    f = frame
    if not intended and not observed:
        return draw.document(min(360, f.width), 40, "No traffic has moved yet",
                             [draw.text(8, 24, "no traffic has moved yet", fill=MUTED)])
    span = max((end - start).total_seconds(), 1.0)
    top, plot_h = TRAFFIC_TOP, TRAFFIC_H
    bottom = top + plot_h

    def x(at):
        return f.left + (f.plot_right - f.left) * max(0.0, min(1.0, (at - start).total_seconds() / span))

    def y(percent):
        return top + plot_h * (1 - max(0.0, min(100.0, percent)) / 100)

    body = [f'<rect x="{f.left}" y="{top}" width="{f.plot_right - f.left}" height="{plot_h}" fill="none" '
            f'stroke="{GRID}"/>']
    for percent in (0, 25, 50, 75, 100):
        body.append(f'<line x1="{f.left}" y1="{y(percent):.1f}" x2="{f.plot_right}" y2="{y(percent):.1f}" '
                    f'stroke="{GRID}"/>')
        body.append(draw.text(f.left - 4, y(percent) + 4, f"{percent}%", anchor="end", size=f.small, fill=MUTED))
    for at, label in steps:
        sx = x(at)
        body.append(f'<line class="step-start" x1="{sx:.1f}" y1="{top}" x2="{sx:.1f}" y2="{bottom}" stroke="{INK}" '
                    f'stroke-width="1" stroke-dasharray="2 3"/>')
        body.append(draw.text(sx + 3, top + 12, label, size=f.small, fill=INK, weight="bold"))
    if intended:
        coords, previous = [], None
        for at, percent in intended:
            if previous is not None:
                coords.append(f"{x(at):.1f},{y(previous):.1f}")
            coords.append(f"{x(at):.1f},{y(percent):.1f}")
            previous = percent
        coords.append(f"{x(end):.1f},{y(previous):.1f}")
        tip = "asked for: " + ", ".join(f"{at:%H:%M:%S} {percent:g}%" for at, percent in intended)
        body.append(f'<g class="intended"><title>{draw.esc(tip)}</title><polyline points="{" ".join(coords)}" '
                    f'fill="none" stroke="{INK}" stroke-width="2"/></g>')
    for at, percent, tip in observed:
        body.append(f'<g class="point observed"><title>{draw.esc(tip)}</title><circle cx="{x(at):.1f}" '
                    f'cy="{y(percent):.1f}" r="3.5" fill="{CANARY}" stroke="#ffffff" stroke-width="1"/></g>')
    body.append(draw.text(f.left, bottom + 16, f"{start:%H:%M:%S} UTC", size=f.small, fill=MUTED))
    body.append(draw.text(f.plot_right, bottom + 16, f"{end:%H:%M:%S} UTC", anchor="end", size=f.small, fill=MUTED))
    lx = f.left if f.labels_inside else f.plot_right + 12
    ly = bottom + 34 if f.labels_inside else top + 20
    body += [f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 18}" y2="{ly - 4}" stroke="{INK}" stroke-width="2"/>',
             draw.text(lx + 24, ly, "weight asked for", size=11, fill=MUTED),
             f'<circle cx="{lx + 9 + (150 if f.labels_inside else 0)}" cy="{ly - 4 + (0 if f.labels_inside else 20)}" '
             f'r="3.5" fill="{CANARY}"/>',
             draw.text(lx + 24 + (150 if f.labels_inside else 0), ly + (0 if f.labels_inside else 20),
                       "share served", size=11, fill=MUTED)]
    height = bottom + (44 if f.labels_inside else 26)
    return draw.document(f.width, height, "Canary share of traffic over time: asked for and served", body)
