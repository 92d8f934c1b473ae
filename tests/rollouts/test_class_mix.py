"""The predicted-class mix: canary against stable on the same traffic, as a
Dirichlet-multinomial (per-class Beta) mixture e-value, failing a canary that
stops predicting a class."""

import math

import numpy as np
import pytest

from rollouts.analysis import Verdict, check_class_mix, log_class_mix_e_value

MIX = {"0": 0.5, "1": 0.3, "2": 0.2}


def _check(canary, stable, **kw):
    return check_class_mix(canary, stable, **{"alpha": 0.05, "min_requests": 100, "prior_share": 0.1, **kw})


def test_e_value_matches_the_worked_example():
    # Uniform priors (a = b = 1); canary predicted class b twice, stable class a twice: (1/9) / (1/16).
    assert math.exp(log_class_mix_e_value([0, 2], [2, 0], 0.5, prior_strength=2)) == pytest.approx(16 / 9)


def test_a_dropped_class_at_10_percent_traffic_is_caught_within_about_1200_predictions():
    # Ten equally likely classes; the canary answers class 4 where it would have said 3.
    def log_e(n):
        stable, canary = np.full(10, 0.09 * n), np.full(10, 0.01 * n)
        canary[4], canary[3] = 0.02 * n, 0.0
        return log_class_mix_e_value(canary, stable, 0.1)
    assert log_e(1000) < math.log(20) <= log_e(1400)


def test_no_predictions_is_no_evidence():
    assert log_class_mix_e_value([0, 0], [0, 0]) == pytest.approx(0.0)


def test_a_canary_that_never_predicts_one_class_fails_naming_it():
    # 10% canary of 3,000 predictions: stable said class 2 at 20%, the canary never.
    canary = {"0": 190.0, "1": 110.0, "2": 0.0}
    stable = {"0": 1350.0, "1": 810.0, "2": 540.0}
    result = _check(canary, stable)
    assert result.verdict == Verdict.FAIL
    assert result.moved[0] == "2"
    assert "class 2 0.0% of canary predictions vs 20.0% of stable's" in result.reason


def test_a_canary_predicting_like_stable_passes():
    result = _check({"0": 150.0, "1": 90.0, "2": 60.0}, {"0": 1350.0, "1": 810.0, "2": 540.0})
    assert result.verdict == Verdict.PASS, result.reason
    assert result.moved == ()


def test_a_class_only_one_arm_exports_counts_as_zero_for_the_other():
    result = _check({"0": 150.0, "1": 150.0}, {"0": 1350.0, "1": 810.0, "2": 540.0})
    assert result.verdict == Verdict.FAIL and "2" in result.moved


def test_missing_counts_or_few_predictions_are_inconclusive():
    assert _check(None, {"0": 10.0}).verdict == Verdict.INCONCLUSIVE
    assert _check({}, {"0": 10.0}).verdict == Verdict.INCONCLUSIVE
    assert _check({"0": 5.0, "1": 3.0}, {"0": 45.0, "1": 27.0}).verdict == Verdict.INCONCLUSIVE


def test_false_rollback_rate_is_bounded_under_peeking():
    # Same mix in both arms, 10% canary, 500 predictions a tick for 200 ticks, looked at every tick.
    rng = np.random.default_rng(5)
    runs, alpha, p = 1000, 0.05, list(MIX.values())
    failed = 0
    for _ in range(runs):
        canary, stable = np.zeros(3), np.zeros(3)
        for _ in range(200):
            n = rng.binomial(500, 0.1)
            canary += rng.multinomial(n, p)
            stable += rng.multinomial(500 - n, p)
            if log_class_mix_e_value(canary, stable, 0.1) >= math.log(1 / alpha):
                failed += 1
                break
    assert failed / runs <= alpha
