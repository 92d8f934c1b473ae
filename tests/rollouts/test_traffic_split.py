"""The traffic-split guard: the canary's share of requests against the share the
router was set to give it, as an anytime-valid test with a tolerance."""

import math

import numpy as np
import pytest

from rollouts.analysis import Verdict, check_traffic_split, log_split_e_value


def _check(canary, stable, intended, **kw):
    return check_traffic_split(canary, stable, intended, **{"alpha": 0.05, "tolerance": 0.02,
                                                            "min_requests": 100, **kw})


def test_e_value_matches_the_worked_example():
    # w = 1/2, both of 2 requests the canary's: (1/3) / (1/2)^2 = 4/3 without tolerance ...
    assert math.exp(log_split_e_value(2, 2, 0.5, 0.0)) == pytest.approx(4 / 3)
    # ... and (1/3) / 0.6^2 when the null allows shares up to 0.6.
    assert math.exp(log_split_e_value(2, 2, 0.5, 0.1)) == pytest.approx((1 / 3) / 0.36)


def test_the_demos_25_percent_step_that_ran_at_30_percent_is_invalid():
    result = _check(1500, 3500, 0.25)
    assert result.verdict == Verdict.INVALID
    assert result.observed_share == pytest.approx(0.3) and result.intended_share == 0.25
    assert "30.0%" in result.reason and "25.0%" in result.reason


def test_a_split_within_the_tolerance_passes():
    result = _check(254, 746, 0.25)
    assert result.verdict == Verdict.PASS, result.reason


def test_few_requests_are_inconclusive_and_no_counts_are_inconclusive():
    assert _check(20, 80, 0.25).verdict == Verdict.INCONCLUSIVE
    assert _check(None, 80, 0.25).verdict == Verdict.INCONCLUSIVE
    assert _check(20, 80, None).verdict == Verdict.INCONCLUSIVE


def test_a_correct_split_is_rarely_held_as_invalid_under_peeking():
    # The router's 10% exactly, 200 requests a tick for 300 ticks, looked at every tick.
    rng = np.random.default_rng(3)
    runs, alpha = 1000, 0.05
    canary = rng.binomial(200, 0.1, size=(runs, 300)).cumsum(axis=1)
    total = 200 * np.arange(1, 301)
    invalid = 0
    for run in range(runs):
        if any(log_split_e_value(int(x), int(n), 0.1, 0.0) >= math.log(1 / alpha)
               for x, n in zip(canary[run], total)):
            invalid += 1
    assert invalid / runs <= alpha
