"""The canary-vs-stable sequential test: a Bayes factor on how errors split
between the arms, safe to check every tick."""

import numpy as np
import pytest
from scipy import stats

from rollouts.analysis import Verdict, bayes_factor, check_canary_errors

ALPHA = 0.05


def test_bayes_factor_matches_closed_form_for_two_canary_errors():
    # p0 = 1/2, uniform prior on (1/2, 1), both of 2 errors on the canary:
    # marginal under H1 = ∫_{1/2}^1 p^2 dp / (1/2) = (7/24) / (1/2) = 7/12;
    # likelihood under H0 = (1/2)^2 = 1/4; BF = (7/12) / (1/4) = 7/3.
    assert bayes_factor(2, 2, 0.5) == pytest.approx(7 / 3)


def test_bayes_factor_matches_closed_form_for_one_stable_error():
    # p0 = 1/2, the only error on stable: ∫_{1/2}^1 (1 - p) dp / (1/2) = 1/4;
    # under H0 1/2; BF = 1/2: the data lean toward "canary not worse".
    assert bayes_factor(0, 1, 0.5) == pytest.approx(1 / 2)


def test_no_errors_is_no_evidence_either_way():
    assert bayes_factor(0, 0, 0.1) == pytest.approx(1.0)


def test_canary_fails_once_bayes_factor_reaches_one_over_alpha():
    # 5 of 10 errors at a 10% share: BF ≈ 68 >= 1/0.05 = 20.
    result = check_canary_errors(5, 5, 0.1, 1000, alpha=ALPHA, min_requests=100)
    assert result.verdict == Verdict.FAIL
    assert result.bayes_factor >= 1 / ALPHA


def test_canary_taking_its_share_of_errors_passes_with_enough_traffic():
    # 3 of 30 errors at a 10% share is exactly its share: BF < 1.
    result = check_canary_errors(3, 27, 0.1, 600, alpha=ALPHA, min_requests=100)
    assert result.verdict == Verdict.PASS
    assert result.bayes_factor < 1


def test_too_little_canary_traffic_is_inconclusive():
    result = check_canary_errors(0, 0, 0.1, 50, alpha=ALPHA, min_requests=100)
    assert result.verdict == Verdict.INCONCLUSIVE


def test_suspicious_but_unproven_canary_is_inconclusive():
    # 2 of 5 errors at a 10% share: more than its share, not yet 1/alpha.
    result = check_canary_errors(2, 3, 0.1, 1000, alpha=ALPHA, min_requests=100)
    assert 1 < result.bayes_factor < 1 / ALPHA
    assert result.verdict == Verdict.INCONCLUSIVE


def test_missing_stable_arm_is_inconclusive():
    assert check_canary_errors(0, None, None, 1000, alpha=ALPHA, min_requests=100).verdict == Verdict.INCONCLUSIVE
    assert check_canary_errors(0, 0, 1.0, 1000, alpha=ALPHA, min_requests=100).verdict == Verdict.INCONCLUSIVE


def _simulate_ticks(rng, runs, ticks, canary_per_tick, stable_per_tick, canary_rate, stable_rate):
    """Cumulative per-arm error counts after each tick: arrays (runs, ticks)."""
    canary = rng.binomial(canary_per_tick, canary_rate, size=(runs, ticks)).cumsum(axis=1)
    stable = rng.binomial(stable_per_tick, stable_rate, size=(runs, ticks)).cumsum(axis=1)
    return canary, stable


def test_bayes_factor_false_rollback_rate_is_bounded_under_peeking():
    # A good canary (same 1% error rate) at a 10% share, checked after every
    # tick of 1,000 requests for 300 ticks. Ville's inequality promises at most
    # alpha of runs ever reach BF >= 1/alpha. A fixed-sample binomial test
    # checked as often rolls back far more often: that contrast shows this
    # simulation would notice an unbounded rate.
    rng = np.random.default_rng(20240301)
    runs, share = 2000, 0.1
    canary, stable = _simulate_ticks(rng, runs, 300, 100, 900, 0.01, 0.01)
    total = canary + stable

    rolled_back = (bayes_factor(canary, total, share) >= 1 / ALPHA).any(axis=1)
    naive_p_values = stats.binom.sf(canary - 1, total, share)
    naive_rolled_back = (naive_p_values < ALPHA).any(axis=1)

    assert rolled_back.mean() <= ALPHA + 0.01
    assert naive_rolled_back.mean() > 2 * ALPHA


def test_bad_canary_detected_within_N_requests():
    # Canary fails 5% of requests, stable 1%, canary at a 10% share. Its
    # share of errors is 0.005 / (0.005 + 0.009) ≈ 36% instead of 10%; every
    # seeded run must be rolled back before the canary serves 1,000 requests.
    n_canary_requests, per_tick = 1000, 100
    rng = np.random.default_rng(7)
    canary, stable = _simulate_ticks(rng, 200, n_canary_requests // per_tick, per_tick, 900, 0.05, 0.01)
    for run in range(canary.shape[0]):
        verdicts = [
            check_canary_errors(
                canary[run, t], stable[run, t], 0.1, per_tick * (t + 1), alpha=ALPHA, min_requests=100
            ).verdict
            for t in range(canary.shape[1])
        ]
        assert Verdict.FAIL in verdicts, f"run {run} not detected within {n_canary_requests} canary requests"
