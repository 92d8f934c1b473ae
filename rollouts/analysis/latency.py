"""Latency check for a canary: its p95 against the SLO's latency threshold and
against stable's p95, from quantiles estimated on histogram buckets the way
Prometheus' ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from rollouts.analysis.result import CheckResult, Verdict


def quantile_from_buckets(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Estimate the ``q`` quantile from cumulative ``(upper_bound, count)`` buckets.

    Same rules as Prometheus: linear interpolation inside the bucket that
    holds the rank, the first bucket starting at 0, a rank in the ``+Inf``
    bucket answered with the highest finite bound; NaN without observations.
    """
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return math.nan
    total = ordered[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    index = next(i for i, (_, count) in enumerate(ordered) if count >= rank)
    if index == len(ordered) - 1:
        return ordered[-2][0]
    upper, count = ordered[index]
    if index == 0:
        if upper <= 0:
            return upper
        lower, below = 0.0, 0.0
    else:
        lower, below = ordered[index - 1]
    if count == below:
        return upper
    return lower + (upper - lower) * (rank - below) / (count - below)


@dataclass(frozen=True)
class LatencyResult(CheckResult):
    """Outcome of the latency check; latencies in milliseconds."""

    check: str = "latency_p95"
    canary_p95_ms: float | None = None
    stable_p95_ms: float | None = None
    threshold_ms: float = 0.0
    max_ratio_to_stable: float = 0.0
    ratio_to_stable: float | None = None
    canary_requests: float | None = None
    min_requests: int = 0
    min_gap_ms: float = 0.0


def check_latency(
    canary_p95_s: float | None,
    stable_p95_s: float | None,
    *,
    threshold_ms: float,
    max_ratio_to_stable: float,
    canary_requests: float | None = None,
    min_requests: int = 0,
    min_gap_ms: float = 0.0,
) -> LatencyResult:
    """Fail if the canary's p95 exceeds the SLO threshold or ``max_ratio_to_stable``
    times stable's p95; inconclusive when either p95 is missing or NaN, or
    when ``canary_requests`` is given and under ``min_requests`` (a p95 of a
    handful of requests is noise, in either direction).

    The absolute threshold is judged first and alone: a canary over the SLO
    fails even when stable has no data to compare with. The ratio to stable
    fails only when the canary is also ``min_gap_ms`` slower: for a model that
    answers in 1-2 ms, histogram-bucket noise alone makes ratios like 1.5x.
    """
    canary_ms = _to_ms(canary_p95_s)
    stable_ms = _to_ms(stable_p95_s)
    ratio = canary_ms / stable_ms if canary_ms is not None and stable_ms else None
    numbers = dict(
        canary_p95_ms=canary_ms,
        stable_p95_ms=stable_ms,
        threshold_ms=threshold_ms,
        max_ratio_to_stable=max_ratio_to_stable,
        ratio_to_stable=ratio,
        canary_requests=canary_requests,
        min_requests=min_requests,
        min_gap_ms=min_gap_ms,
    )
    if canary_ms is None:
        return LatencyResult(Verdict.INCONCLUSIVE, "no canary latency data in the window", **numbers)
    if canary_requests is not None and canary_requests < min_requests:
        return LatencyResult(
            Verdict.INCONCLUSIVE,
            f"canary p95 rests on {canary_requests:.0f} requests, fewer than {min_requests}",
            **numbers,
        )
    if canary_ms > threshold_ms:
        return LatencyResult(
            Verdict.FAIL, f"canary p95 {canary_ms:.0f} ms exceeds the SLO's {threshold_ms:.0f} ms", **numbers
        )
    if ratio is None:
        return LatencyResult(
            Verdict.INCONCLUSIVE, "no stable latency data to compare the canary's p95 with", **numbers
        )
    if ratio > max_ratio_to_stable and canary_ms - stable_ms > min_gap_ms:
        return LatencyResult(
            Verdict.FAIL,
            f"canary p95 {canary_ms:.0f} ms is {ratio:.2f}x stable's {stable_ms:.0f} ms "
            f"(at most {max_ratio_to_stable:.2f}x allowed)",
            **numbers,
        )
    return LatencyResult(
        Verdict.PASS,
        f"canary p95 {canary_ms:.0f} ms is within {threshold_ms:.0f} ms and {ratio:.2f}x stable's",
        **numbers,
    )


def _to_ms(seconds: float | None) -> float | None:
    if seconds is None or math.isnan(seconds):
        return None
    return seconds * 1000.0
