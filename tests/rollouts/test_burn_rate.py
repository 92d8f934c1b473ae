"""The burn-rate check: the SRE Workbook's multiwindow, multi-burn-rate rule,
compressed to one rollout step."""

import json
from datetime import timedelta

import pytest

from rollouts.analysis import (
    WORKBOOK_PAGE_POLICIES,
    BurnWindowPair,
    RequestCounts,
    Verdict,
    burn_rate,
    check_burn_rate,
    scaled_burn_windows,
)

PAIR = BurnWindowPair(long_s=100.0, short_s=30.0, threshold=14.4)


def _check(long_counts, short_counts, min_requests=100):
    return check_burn_rate(0.999, [PAIR], {100.0: long_counts, 30.0: short_counts}, min_requests)


def test_burn_rate_is_error_ratio_over_error_budget():
    # 50 errors in 10,000 requests is a 0.5% error ratio; a 99.9% SLO leaves a
    # 0.1% budget; 0.5% / 0.1% = 5: the budget would last a fifth of the period.
    assert burn_rate(RequestCounts(total=10_000, errors=50), slo_target=0.999) == pytest.approx(5.0)


def test_workbook_thresholds_come_from_budget_spent_per_window():
    # 2% of a 30-day budget in 1 hour: 0.02 / (1/720) = 14.4; 5% in 6 hours:
    # 0.05 / (6/720) = 6.
    assert [round(p.threshold, 9) for p in WORKBOOK_PAGE_POLICIES] == [14.4, 6.0]


def test_windows_compress_so_the_longest_long_window_is_the_step():
    # A 10-minute step is 6h compressed 36 times: 1h -> 100 s, 5m -> 8.3 s,
    # 6h -> 600 s, 30m -> 50 s. Thresholds do not change (a ratio of rates).
    pairs = scaled_burn_windows(timedelta(minutes=10), min_window_s=1)
    assert [(p.long_s, p.short_s) for p in pairs] == [(100.0, 8.0), (600.0, 50.0)]
    assert [round(p.threshold, 9) for p in pairs] == [14.4, 6.0]


def test_compressed_windows_never_go_below_the_floor():
    pairs = scaled_burn_windows(timedelta(minutes=10), min_window_s=30)
    assert [(p.long_s, p.short_s) for p in pairs] == [(100.0, 30.0), (600.0, 50.0)]


def test_both_windows_must_burn_to_fail():
    # 3% errors burn at 30x, 1% at 10x; the threshold is 14.4x.
    burning, calm = RequestCounts(1000, 30), RequestCounts(1000, 10)
    assert _check(burning, calm).verdict == Verdict.PASS  # the burn has ended
    assert _check(calm, burning).verdict == Verdict.PASS  # a blip, not yet significant
    assert _check(burning, burning).verdict == Verdict.FAIL


def test_one_burning_pair_fails_the_check():
    pairs = scaled_burn_windows(timedelta(minutes=10))  # (100, 30) at 14.4 and (600, 50) at 6
    calm, warm = RequestCounts(1000, 1), RequestCounts(1000, 8)  # 1x and 8x
    counts = {100.0: calm, 30.0: calm, 600.0: RequestCounts(12000, 96), 50.0: warm}
    result = check_burn_rate(0.999, pairs, counts, min_requests=100)
    assert result.verdict == Verdict.FAIL
    assert [p["verdict"] for p in result.pairs] == [Verdict.PASS, Verdict.FAIL]


def test_too_few_requests_is_inconclusive():
    # Every request failed, but 99 requests in the short window are too few.
    result = _check(RequestCounts(1000, 1000), RequestCounts(99, 99), min_requests=100)
    assert result.verdict == Verdict.INCONCLUSIVE


def test_no_data_in_a_window_is_inconclusive():
    assert _check(RequestCounts(1000, 0), None).verdict == Verdict.INCONCLUSIVE


def test_evidence_holds_every_window_as_strict_json():
    result = _check(RequestCounts(1000, 30), RequestCounts(300, 9))
    evidence = json.loads(json.dumps(result.evidence(), allow_nan=False))
    assert evidence["verdict"] == "fail"
    assert evidence["pairs"][0]["long_total"] == 1000
    assert evidence["pairs"][0]["short_burn_rate"] == pytest.approx(30.0)


def test_a_long_window_holding_no_more_than_its_short_one_cannot_fail():
    # Early in a rollout the 600 s window holds only the canary's first 50 s: the same 300
    # requests as the short window. Two errors read as burn 6.7, but prove nothing yet.
    pairs = scaled_burn_windows(timedelta(minutes=10))
    young = RequestCounts(300, 2)
    counts = {100.0: young, 30.0: young, 600.0: young, 50.0: young}
    result = check_burn_rate(0.999, pairs, counts, min_requests=100)
    assert result.verdict == Verdict.INCONCLUSIVE
    grown = {**counts, 600.0: RequestCounts(1200, 8), 100.0: RequestCounts(400, 3)}
    assert check_burn_rate(0.999, pairs, grown, min_requests=100).verdict == Verdict.FAIL
