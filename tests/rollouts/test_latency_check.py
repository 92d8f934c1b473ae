"""The latency check: canary p95 from histogram buckets, against the SLO
threshold and against stable."""

import math

import pytest

from rollouts.analysis import Verdict, check_latency, quantile_from_buckets


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


def _check(canary_s, stable_s, **kw):
    return check_latency(canary_s, stable_s, threshold_ms=300, max_ratio_to_stable=1.5, **kw)


def test_canary_over_the_slo_threshold_fails():
    assert _check(0.31, 0.30).verdict == Verdict.FAIL


def test_canary_much_slower_than_stable_fails():
    # 160 ms is 2x stable's 80 ms, over the 1.5x allowed, though under 300 ms.
    result = _check(0.16, 0.08)
    assert result.verdict == Verdict.FAIL
    assert result.ratio_to_stable == pytest.approx(2.0)


def test_canary_within_threshold_and_ratio_passes():
    assert _check(0.10, 0.08).verdict == Verdict.PASS


@pytest.mark.parametrize("canary_s", [None, math.nan])
def test_no_canary_latency_is_inconclusive(canary_s):
    assert _check(canary_s, 0.08).verdict == Verdict.INCONCLUSIVE


def test_no_stable_latency_is_inconclusive_unless_over_threshold():
    assert _check(0.10, math.nan).verdict == Verdict.INCONCLUSIVE
    assert _check(0.40, None).verdict == Verdict.FAIL


def test_p95_of_few_requests_is_inconclusive():
    assert _check(0.10, 0.08, canary_requests=20, min_requests=100).verdict == Verdict.INCONCLUSIVE


def test_ratio_alone_does_not_fail_a_millisecond_model_within_the_gap():
    # 2 ms vs 1 ms is 2x stable, but 1 ms slower is bucket noise for a fast model.
    result = check_latency(0.002, 0.001, threshold_ms=300, max_ratio_to_stable=1.5, min_gap_ms=10)
    assert result.verdict == Verdict.PASS
    slower = check_latency(0.030, 0.010, threshold_ms=300, max_ratio_to_stable=1.5, min_gap_ms=10)
    assert slower.verdict == Verdict.FAIL
