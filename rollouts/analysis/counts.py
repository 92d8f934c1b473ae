"""How many events a set of Prometheus counters counted in a window, from their
raw values at the window's two ends, so that a series born mid-window is
counted in full instead of read as nothing.

Why not ``increase()``. ``increase(c[w])`` needs two samples of a series
inside the window and extrapolates between them. A series that appears with
a non-zero first sample (a client library creates a labelled child on its
first increment: the canary's first ``code="500"`` is exported as 1, never as
0) has one sample at first, so ``increase()`` returns no value for it, and
from the second sample on it never counts the first one. The old fallback
``or 0 * sum(increase(...))`` then read those errors as zero while the request
total already passed the minimum: a canary failing from its first request
read PASS.

The rule here. Take each series' last sample at or before ``t0`` (the
window's start) and at or before ``t1`` (its end), and per series:

    increase = v1 - v0   when both exist and v1 >= v0
    increase = v1        when the series has no sample at t0 (born in the window, from 0)
    increase = v1        when v1 < v0 (the counter reset: what it counted since)
    increase = 0         when the series has no sample in the window

and sum. Guarantee: for counters that start at 0 when their series is
created (every Prometheus client library; `mlcp serve` also exports its
codes and classes at 0 from start-up), the result is exactly the events
counted between the last scrapes at or before ``t0`` and ``t1``, with no
extrapolation; a reset loses only the events between the last scrape before
it and the reset itself. Worked example: a ``500`` series first scraped at 3
and later at 5, a ``200`` series at 100 then 180: errors 5, requests 5 + 80.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping


def series_increase(before: Mapping[Hashable, float], after: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """Per series, what it counted from ``before`` (values at t0) to ``after`` (values at t1).

    A series only in ``before`` had no sample in the window and counted nothing,
    so it is left out.
    """
    out = {}
    for series, v1 in after.items():
        v0 = before.get(series)
        out[series] = v1 if v0 is None or v1 < v0 else v1 - v0
    return out
