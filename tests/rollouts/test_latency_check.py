"""The latency check: canary p95 from histogram buckets against the SLO
threshold, and the sequential test of canary against stable on bucket counts."""

import math

import numpy as np
import pytest

from rollouts.analysis import Verdict, check_latency, log_latency_bayes_factor, quantile_from_buckets
from rollouts.analysis.latency import log_sum_exp, slower_than


def test_p95_from_histogram_matches_known_distribution():
    # Latency ~ Exponential(mean 100 ms): p95 = -ln(0.05) * 0.1 s ≈ 299.6 ms.
    # Cumulative bucket counts are the exact CDF at 10 ms bounds; linear
    # interpolation inside a 10 ms bucket may be off by well under 1 ms there.
    n, mean_s = 100_000, 0.1
    bounds = [i / 100 for i in range(1, 101)]
    buckets = [(le, n * (1 - math.exp(-le / mean_s))) for le in bounds] + [(math.inf, n)]
    assert quantile_from_buckets(0.95, buckets) == pytest.approx(-math.log(0.05) * mean_s, abs=0.001)


def test_quantile_interpolates_like_prometheus():
    # 50 requests under 100 ms, 40 more under 200 ms, 10 above.
    buckets = [(0.1, 50), (0.2, 90), (math.inf, 100)]
    # p50: rank 50 ends the first bucket, which starts at 0: 0.1.
    assert quantile_from_buckets(0.5, buckets) == pytest.approx(0.1)
    # p70: rank 70 is 20 of 40 into (0.1, 0.2]: 0.15.
    assert quantile_from_buckets(0.7, buckets) == pytest.approx(0.15)
    # p95: rank 95 is in +Inf: the highest finite bound, 0.2.
    assert quantile_from_buckets(0.95, buckets) == pytest.approx(0.2)


def test_empty_histogram_has_no_quantile():
    assert math.isnan(quantile_from_buckets(0.95, [(0.1, 0), (math.inf, 0)]))


EDGES = (0.001, 0.0025, 0.005, 0.01, 0.3)


def buckets(counts_per_bucket) -> dict[float, float]:
    """Cumulative buckets from requests per bucket (one more for +Inf) over EDGES."""
    cumulative, out = 0, {}
    for le, n in zip((*EDGES, math.inf), counts_per_bucket):
        cumulative += n
        out[le] = float(cumulative)
    return out


def _check(canary, stable, share=0.1, **kw):
    return check_latency(canary, stable, share, **{"threshold_ms": 300, "alpha": 0.05, "min_requests": 100, **kw})


def test_bayes_factor_averages_the_error_tests_over_edges():
    # The module's worked example: p0 = 1/2, both slow requests over the first edge are the
    # canary's (BF 7/3, as in the error test), none over the second (BF 1): (7/3 + 1) / 2.
    log_bf, per_edge = log_latency_bayes_factor({0.1: 2, 0.2: 0}, {0.1: 0, 0.2: 0}, 0.5)
    assert math.exp(log_bf) == pytest.approx(5 / 3)
    assert math.exp(per_edge[0.1]) == pytest.approx(7 / 3) and per_edge[0.2] == pytest.approx(0.0)


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.0], math.log(2)),                   # log(1 + 1)
    ([math.log(3), math.log(5)], math.log(8)),   # log(3 + 5)
    ([1000.0, 1000.0], 1000.0 + math.log(2)),    # exp(1000) overflows a float: the shift keeps it finite
    ([-math.inf, math.log(4)], math.log(4)),     # an edge with no evidence at all adds nothing
    ([-math.inf, -math.inf], -math.inf),
    ([math.inf, 0.0], math.inf),
])
def test_edges_are_combined_by_log_sum_exp_without_overflow(values, expected):
    assert log_sum_exp(np.array(values)) == pytest.approx(expected)


def test_requests_slower_than_each_edge_come_from_cumulative_buckets():
    assert slower_than(buckets([10, 20, 30, 40, 0, 0])) == {0.001: 90, 0.0025: 70, 0.005: 40, 0.01: 0, 0.3: 0}


def test_canary_slower_at_any_edge_fails_before_its_p95_nears_the_slo():
    # Both around 2 ms; the canary moved a bucket up: 2.5-5 ms instead of 1-2.5 ms.
    # At 10% of traffic it has 100 of the 190 requests over 2.5 ms, where 10% would be 19.
    result = _check(buckets([0, 100, 0, 0, 0, 0]) | {}, None)
    assert result.verdict == Verdict.INCONCLUSIVE  # no stable to compare with, and under the SLO
    slower = _check(buckets([0, 0, 100, 0, 0, 0]), buckets([0, 810, 90, 0, 0, 0]))
    assert slower.verdict == Verdict.FAIL and slower.worst_edge_ms == pytest.approx(2.5)
    assert (slower.canary_slower, slower.stable_slower) == (100, 90)
    assert "slower than stable" in slower.reason and "p95" in slower.reason
    assert slower.canary_p95_ms < 300


def test_canary_as_fast_as_stable_passes():
    same = _check(buckets([10, 60, 25, 5, 0, 0]), buckets([90, 540, 225, 45, 0, 0]))
    assert same.verdict == Verdict.PASS, same.reason
    assert same.bayes_factor <= 1


def test_canary_faster_than_stable_is_no_reason_to_roll_back():
    assert _check(buckets([100, 0, 0, 0, 0, 0]), buckets([0, 0, 900, 0, 0, 0])).verdict == Verdict.PASS


def test_canary_over_the_slo_threshold_fails_even_as_slow_as_stable():
    # Everything between 300 ms and 1 s in both arms: no evidence the canary is slower, but its
    # p95 (965 ms, interpolated as Prometheus does) breaks the SLO.
    result = _check({0.3: 0, 1.0: 100, math.inf: 100}, {0.3: 0, 1.0: 900, math.inf: 900})
    assert result.verdict == Verdict.FAIL and "exceeds the SLO" in result.reason


def test_no_canary_latency_is_inconclusive():
    assert _check(None, buckets([1, 0, 0, 0, 0, 0])).verdict == Verdict.INCONCLUSIVE


def test_latency_of_few_requests_is_inconclusive_unless_proven_slower():
    assert _check(buckets([2, 8, 0, 0, 0, 0]), buckets([18, 72, 0, 0, 0, 0])).verdict == Verdict.INCONCLUSIVE


def test_false_rollback_rate_is_bounded_under_peeking():
    # A canary as fast as stable at 10% of 1,000 requests a tick for 100 ticks, looked at
    # every tick: Ville's inequality promises at most alpha of runs ever fail.
    rng = np.random.default_rng(11)
    runs, share, alpha = 300, 0.1, 0.05
    probabilities = [0.1, 0.5, 0.3, 0.08, 0.019, 0.001]
    failed = 0
    for _ in range(runs):
        canary = np.zeros(6)
        stable = np.zeros(6)
        for _ in range(100):
            n = rng.binomial(1000, share)
            canary += rng.multinomial(n, probabilities)
            stable += rng.multinomial(1000 - n, probabilities)
            c, s = buckets(canary), buckets(stable)
            share_seen = c[math.inf] / (c[math.inf] + s[math.inf])
            log_bf, _ = log_latency_bayes_factor(slower_than(c), slower_than(s), share_seen)
            if log_bf >= math.log(1 / alpha):
                failed += 1
                break
    assert failed / runs <= alpha
