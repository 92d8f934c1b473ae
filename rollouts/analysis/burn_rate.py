"""SLO burn-rate check for a canary: the SRE Workbook's multiwindow,
multi-burn-rate alert, with its windows compressed to the length of one
rollout step.

Burn rate is how fast a version spends the error budget: the error ratio
divided by the budget, ``(errors / total) / (1 - slo_target)``. A burn rate
of 1 spends exactly the whole budget over the SLO period.

The Workbook pages when both windows of a pair burn above the pair's
threshold, for a 30-day period:

    long 1h, short 5m,  burn 14.4  (2% of the budget gone in an hour)
    long 6h, short 30m, burn 6     (5% of the budget gone in six hours)

The long window proves the burn is significant, the short one proves it is
still happening (so a spike that already ended does not fail a step).

Scaling to a rollout: a canary step is analysed over minutes, not a month.
We compress time uniformly so that the longest long window (6h) becomes the
step's analysis duration ``D``; every window is multiplied by
``D / 6h`` (for ``D`` = 10 min: 1h -> 100 s, 5m -> ~8 s, 6h -> 10 min,
30m -> 50 s). The thresholds stay as they are, and that is deliberate, not
an omission: each threshold is ``budget fraction / (long window / period)``,
and a uniform compression divides both the window and the period by the same
factor, so the quotient, a ratio of rates, does not change. In words: a
canary that fails here is spending budget fast enough that, promoted to all
traffic, it would spend 2% of a month's budget in an hour (or 5% in six).
What does change with compression is how few requests a window holds; hence
a floor on window length (``min_window_s``, keep it at least twice the scrape
interval) and a minimum request count per window, below which the pair is
inconclusive rather than passing on noise: ``min_requests`` in the short
window and ``min_requests * long / short`` in the long one, so that the long
window holds the evidence it stands for (a canary younger than its long
window is otherwise judged on its first seconds twice).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from rollouts.analysis.result import CheckResult, Verdict


@dataclass(frozen=True)
class BurnRatePolicy:
    """One window pair of the Workbook, in SLO-period time (unscaled)."""

    long_window: timedelta
    short_window: timedelta
    budget_fraction: float
    slo_period: timedelta = timedelta(days=30)

    @property
    def threshold(self) -> float:
        """Burn rate above which this pair fires (14.4 for 2% in 1h of 30d)."""
        return self.budget_fraction / (self.long_window / self.slo_period)


#: The Workbook's paging pairs for a 30-day SLO (thresholds 14.4 and 6).
WORKBOOK_PAGE_POLICIES: tuple[BurnRatePolicy, ...] = (
    BurnRatePolicy(timedelta(hours=1), timedelta(minutes=5), 0.02),
    BurnRatePolicy(timedelta(hours=6), timedelta(minutes=30), 0.05),
)


@dataclass(frozen=True)
class BurnWindowPair:
    """A window pair scaled to a rollout step: lengths in seconds."""

    long_s: float
    short_s: float
    threshold: float


@dataclass(frozen=True)
class RequestCounts:
    """Requests and failed requests of one arm over one window."""

    total: float
    errors: float


def scaled_burn_windows(
    step_duration: timedelta,
    policies: Sequence[BurnRatePolicy] = WORKBOOK_PAGE_POLICIES,
    min_window_s: float = 30.0,
) -> tuple[BurnWindowPair, ...]:
    """Compress ``policies`` so their longest long window equals ``step_duration``.

    Windows are rounded to whole seconds (PromQL ranges) and never shorter
    than ``min_window_s`` nor, for a short window, longer than its long one.
    """
    longest = max(p.long_window for p in policies)
    factor = step_duration / longest
    pairs = []
    for policy in policies:
        long_s = max(min_window_s, round(policy.long_window.total_seconds() * factor))
        short_s = max(min_window_s, round(policy.short_window.total_seconds() * factor))
        pairs.append(BurnWindowPair(float(long_s), float(min(short_s, long_s)), policy.threshold))
    return tuple(pairs)


def burn_rate(counts: RequestCounts, slo_target: float) -> float:
    """Error ratio over the error budget: 1.0 spends the budget in exactly one period."""
    return (counts.errors / counts.total) / (1.0 - slo_target)


@dataclass(frozen=True)
class BurnRateResult(CheckResult):
    """Outcome of the burn-rate check, with every window's numbers."""

    check: str = "burn_rate"
    slo_target: float = 0.0
    min_requests: int = 0
    pairs: tuple[dict, ...] = field(default_factory=tuple)


def check_burn_rate(
    slo_target: float,
    windows: Sequence[BurnWindowPair],
    counts: Mapping[float, RequestCounts | None],
    min_requests: int,
) -> BurnRateResult:
    """Judge the canary's burn rate over each scaled window pair.

    ``counts`` maps a window length in seconds to the canary's counts over
    it (None: no data). A pair fails only when both its windows burn above
    its threshold; a pair whose short window holds under ``min_requests``
    requests, or its long window under ``min_requests * long / short``, is
    inconclusive. Any failing pair fails the check.
    """
    if not 0.0 < slo_target < 1.0:
        raise ValueError(f"slo_target must be in (0, 1), got {slo_target}")
    pairs = tuple(_judge_pair(slo_target, pair, counts, min_requests) for pair in windows)
    failing = [p for p in pairs if p["verdict"] == Verdict.FAIL]
    thin = [p for p in pairs if p["verdict"] == Verdict.INCONCLUSIVE]
    if failing:
        p = failing[0]
        verdict = Verdict.FAIL
        reason = (
            f"canary burns error budget at {p['long_burn_rate']:.1f}x over {p['long_s']:.0f}s "
            f"and {p['short_burn_rate']:.1f}x over {p['short_s']:.0f}s, above {p['threshold']:.1f}x"
        )
    elif thin:
        p = thin[0]
        verdict = Verdict.INCONCLUSIVE
        reason = (
            f"fewer than {min_requests} canary requests in the {p['long_s']:.0f}s/"
            f"{p['short_s']:.0f}s windows to judge burn rate"
        )
    else:
        verdict = Verdict.PASS
        worst = max(pairs, key=lambda p: p["short_burn_rate"] / p["threshold"])
        reason = (
            f"canary burn rate stays under threshold in every window pair "
            f"(worst short window {worst['short_burn_rate']:.2f}x of {worst['threshold']:.1f}x)"
        )
    return BurnRateResult(
        verdict=verdict, reason=reason, slo_target=slo_target, min_requests=min_requests, pairs=pairs
    )


def _judge_pair(
    slo_target: float,
    pair: BurnWindowPair,
    counts: Mapping[float, RequestCounts | None],
    min_requests: int,
) -> dict:
    long_counts, short_counts = counts.get(pair.long_s), counts.get(pair.short_s)
    row = {
        "long_s": pair.long_s,
        "short_s": pair.short_s,
        "threshold": pair.threshold,
        "long_total": _or_none(long_counts, "total"),
        "long_errors": _or_none(long_counts, "errors"),
        "short_total": _or_none(short_counts, "total"),
        "short_errors": _or_none(short_counts, "errors"),
        "long_burn_rate": None,
        "short_burn_rate": None,
    }
    # The long window proves the burn is significant only if it holds more than the short one:
    # it needs min_requests per short window's worth of its length. Without this, early in a
    # rollout the long window holds only the canary's first seconds, the same requests as the
    # short one, and two errors among 300 read as burn 6.7 (measured: 1 in 3 A/A rollouts failed).
    long_needs = math.ceil(min_requests * pair.long_s / pair.short_s)
    if not (_enough(long_counts, long_needs) and _enough(short_counts, min_requests)):
        row["verdict"] = Verdict.INCONCLUSIVE
        return row
    row["long_burn_rate"] = burn_rate(long_counts, slo_target)
    row["short_burn_rate"] = burn_rate(short_counts, slo_target)
    burning = row["long_burn_rate"] > pair.threshold and row["short_burn_rate"] > pair.threshold
    row["verdict"] = Verdict.FAIL if burning else Verdict.PASS
    return row


def _enough(counts: RequestCounts | None, min_requests: int) -> bool:
    return (
        counts is not None
        and not math.isnan(counts.total)
        and not math.isnan(counts.errors)
        and counts.total >= max(min_requests, 1)
    )


def _or_none(counts: RequestCounts | None, attr: str) -> float | None:
    return None if counts is None else getattr(counts, attr)
