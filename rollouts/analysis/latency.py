"""Latency of a canary against stable: an anytime-valid sequential test on the
latency histogram's bucket counts, with the same false-rollback guarantee as
the error test (`rollouts.analysis.sequential`), plus the SLO's absolute p95.

The model. The histogram says, for each bucket edge ``e``, how many requests
of each arm took longer than ``e``. If both versions are equally fast (H0:
the same latency distribution), which arm served a request tells nothing
about how long it took; so among the ``n_e`` requests slower than ``e``, the
canary's count is ``X_e ~ Binomial(n_e, p0)``, ``p0`` the canary's share of
requests, exactly as errors split in the error test. A slower canary takes
more than its share of slow requests at some edge (H1: ``p > p0`` there).

The e-value. For each edge the error test's Bayes factor ``BF_e`` (a
``Beta(1, 1)`` prior on ``p`` restricted to ``(p0, 1)``) is, under H0, a
non-negative martingale with mean 1 in the sequence of requests. We do not
know in advance which edge a regression moves (a +20% on a 2 ms model moves
the 2.5 ms edge, a stall moves the 1 s edge), so we average over every finite
edge the servers export, a set fixed before any data:

    BF = (1 / K) * sum_e BF_e

An average of martingales with mean 1 on the same sequence is one too, so
Ville's inequality gives ``P_H0(sup_t BF_t >= 1/alpha) <= alpha``: failing
the first time ``BF >= 1/alpha`` keeps the false rollbacks under ``alpha``
however often the controller looks (Lindon, Sanden, Shirikian, KDD 2022, test
quantiles of a latency distribution sequentially the same way). The price of
not choosing the edge is at most ``ln K`` in evidence: with 18 edges, one
edge alone must reach ``18/alpha``. Worked example: two edges, ``p0 = 1/2``,
both of 2 slow requests over the first edge the canary's, none over the
second: ``BF = (7/3 + 1) / 2 = 5/3``.

The absolute check stays: the canary's p95, estimated from its buckets the
way Prometheus' ``histogram_quantile`` does, must stay within the SLO's
threshold once it rests on ``min_requests`` requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from rollouts.analysis.result import CheckResult, Verdict
from rollouts.analysis.sequential import log_bayes_factor


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


def slower_than(buckets: Mapping[float, float]) -> dict[float, int]:
    """Requests slower than each finite edge, from cumulative bucket counts (rounded: requests are events)."""
    total = buckets.get(math.inf)
    if total is None:
        return {}
    return {le: max(0, int(round(total - count))) for le, count in buckets.items() if not math.isinf(le)}


def log_latency_bayes_factor(canary_slower: Mapping[float, int], stable_slower: Mapping[float, int],
                             canary_share: float) -> tuple[float, dict[float, float]]:
    """Natural log of the edge-averaged Bayes factor above, and each edge's own log BF."""
    edges = sorted(set(canary_slower) | set(stable_slower))
    if not edges:
        return 0.0, {}
    x = np.array([canary_slower.get(e, 0) for e in edges], dtype=float)
    n = x + np.array([stable_slower.get(e, 0) for e in edges], dtype=float)
    per_edge = np.atleast_1d(log_bayes_factor(x, n, canary_share))
    return log_sum_exp(per_edge) - math.log(len(edges)), dict(zip(edges, per_edge.tolist()))


def log_sum_exp(values: np.ndarray) -> float:
    """log(sum(exp(values))) without overflow, as `scipy.special.logsumexp` computes it for a 1-d array.

    Here because scipy's costs about 100 us a call in its array-API dispatch, 25 times this one on a
    handful of edges: at 10,000 rollouts a tick that was a second of the controller's CPU.
    """
    top = float(np.max(values))
    if math.isinf(top):  # every value -inf (the sum is 0), or one +inf: no shift can help, and none is needed
        return top
    return top + math.log(float(np.sum(np.exp(values - top))))


@dataclass(frozen=True)
class LatencyResult(CheckResult):
    """Outcome of the latency check; latencies in milliseconds.

    The name `latency_p95` is kept so stored evidence and pages read alike
    before and after the ratio threshold became a test.
    """

    check: str = "latency_p95"
    canary_p95_ms: float | None = None
    stable_p95_ms: float | None = None
    threshold_ms: float = 0.0
    canary_requests: float | None = None
    canary_share: float | None = None
    min_requests: int = 0
    bayes_factor: float | None = None
    log10_bayes_factor: float | None = None
    rollback_at_bayes_factor: float = 0.0
    pass_at_or_below_bayes_factor: float = 1.0
    # The edge with the strongest evidence: its bound and each arm's requests slower than it.
    worst_edge_ms: float | None = None
    canary_slower: int | None = None
    stable_slower: int | None = None
    edges: tuple[dict, ...] = field(default_factory=tuple)


def check_latency(
    canary_buckets: Mapping[float, float] | None,
    stable_buckets: Mapping[float, float] | None,
    canary_share: float | None,
    *,
    threshold_ms: float,
    alpha: float,
    min_requests: int,
    pass_at_or_below_bayes_factor: float = 1.0,
) -> LatencyResult:
    """Fail when the canary is proven slower than stable (BF >= 1/alpha) or, on
    ``min_requests`` requests or more, its p95 exceeds the SLO's threshold; pass
    on enough requests when the evidence does not favour "slower"; otherwise
    inconclusive.

    Buckets are one window's cumulative counts per upper bound in seconds
    (``math.inf`` for ``+Inf``); ``canary_share`` the share of requests the
    canary served in that window.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    canary_total = canary_buckets.get(math.inf) if canary_buckets else None
    canary_ms = _to_ms(quantile_from_buckets(0.95, canary_buckets.items())) if canary_buckets else None
    stable_ms = _to_ms(quantile_from_buckets(0.95, stable_buckets.items())) if stable_buckets else None
    numbers = dict(canary_p95_ms=canary_ms, stable_p95_ms=stable_ms, threshold_ms=threshold_ms,
                   canary_requests=canary_total, canary_share=canary_share, min_requests=min_requests,
                   rollback_at_bayes_factor=1.0 / alpha, pass_at_or_below_bayes_factor=pass_at_or_below_bayes_factor)
    if canary_total is None:
        return LatencyResult(Verdict.INCONCLUSIVE, "no canary latency histogram in the window", **numbers)
    test = None
    if stable_buckets and canary_share is not None and 0.0 < canary_share < 1.0:
        canary_slower, stable_slower = slower_than(canary_buckets), slower_than(stable_buckets)
        log_bf, per_edge = log_latency_bayes_factor(canary_slower, stable_slower, canary_share)
        worst = max(per_edge, key=per_edge.get) if per_edge else None
        numbers.update(
            bayes_factor=math.exp(min(log_bf, 700.0)), log10_bayes_factor=log_bf / math.log(10),
            worst_edge_ms=None if worst is None else worst * 1000.0,
            canary_slower=canary_slower.get(worst), stable_slower=stable_slower.get(worst),
            edges=tuple({"le_ms": e * 1000.0, "canary_slower": canary_slower.get(e, 0),
                         "stable_slower": stable_slower.get(e, 0), "log10_bayes_factor": v / math.log(10)}
                        for e, v in sorted(per_edge.items())))
        test = numbers["bayes_factor"]
    p95s = f"canary p95 {_ms(canary_ms)} vs stable's {_ms(stable_ms)}"
    if test is not None and test >= 1.0 / alpha:
        return LatencyResult(
            Verdict.FAIL,
            f"canary is slower than stable: {numbers['canary_slower']} of "
            f"{numbers['canary_slower'] + numbers['stable_slower']} requests over {numbers['worst_edge_ms']:g} ms "
            f"are the canary's at {canary_share:.1%} of traffic (Bayes factor {test:.3g} >= {1.0 / alpha:.0f}); "
            f"{p95s}", **numbers)
    if canary_total < min_requests:
        return LatencyResult(Verdict.INCONCLUSIVE,
                             f"canary latency rests on {canary_total:.0f} requests, fewer than {min_requests}",
                             **numbers)
    if canary_ms is not None and canary_ms > threshold_ms:
        return LatencyResult(Verdict.FAIL, f"canary p95 {canary_ms:.0f} ms exceeds the SLO's {threshold_ms:.0f} ms",
                             **numbers)
    if test is None:
        return LatencyResult(Verdict.INCONCLUSIVE, f"no stable latency to compare the canary's with ({p95s})",
                             **numbers)
    if test <= pass_at_or_below_bayes_factor:
        return LatencyResult(Verdict.PASS, f"canary is not slower than stable (Bayes factor {test:.3g}); {p95s}, "
                                           f"within the SLO's {threshold_ms:.0f} ms", **numbers)
    return LatencyResult(Verdict.INCONCLUSIVE,
                         f"canary may be slower than stable: Bayes factor {test:.3g} is neither low enough to pass "
                         f"nor {1.0 / alpha:.0f} to roll back; {p95s}", **numbers)


def _to_ms(seconds: float | None) -> float | None:
    if seconds is None or math.isnan(seconds):
        return None
    return seconds * 1000.0


def _ms(value: float | None) -> str:
    return "no data" if value is None else f"{value:.3g} ms"
