"""A canary failing from its very first request, recorded in a real Prometheus
with backfilled series: its `code="500"` series is born with a non-zero first
sample. The analysis must read it FAIL or INCONCLUSIVE at every instant,
never PASS; `increase()` alone reads it as zero errors for a scrape."""

from datetime import datetime, timedelta, timezone

import pytest

from devtools.embedded.prometheus import TrafficPhase, arm_traffic, prometheus_server
from rollouts.analysis import AnalysisConfig, Verdict
from rollouts.metrics import PrometheusMetricsProvider, analyze
from tests.rollouts.conftest import FAST

START = datetime(2024, 4, 2, 9, 0, tzinfo=timezone.utc)
STEP = timedelta(minutes=5)
CONFIG = AnalysisConfig(min_requests=100)


@pytest.fixture(scope="module")
def recorded():
    """Canary version 4 fails 5% of requests from its first one at 10 rps; stable 3 never fails, at 90 rps."""
    end = START + timedelta(minutes=10)
    samples = (arm_traffic("born-failing", "4", "canary", START, [TrafficPhase(end, 10.0, 0.05, FAST)])
               + arm_traffic("born-failing", "3", "stable", START - timedelta(minutes=30),
                             [TrafficPhase(end, 90.0, 0.0, FAST)]))
    with prometheus_server(backfill=samples) as server:
        yield server


def test_the_canarys_error_series_is_born_non_zero_and_increase_misses_it(recorded):
    # What the recording holds: the first 500 sample is already 7.5, so one scrape after the
    # canary starts, increase() has no value for it while requests already pass the minimum.
    first = START + timedelta(seconds=15)
    selector = 'model="born-failing",version="4",track="canary"'
    born = recorded.query(f'mlcp_model_requests_total{{{selector},code="500"}}', at=first)
    assert float(born[0]["value"][1]) == pytest.approx(7.5)
    at = first + timedelta(seconds=5)
    assert recorded.query(f'increase(mlcp_model_requests_total{{{selector},code="500"}}[30s])', at=at) == []
    requests = recorded.query(f'sum(increase(mlcp_model_requests_total{{{selector}}}[30s]))', at=at)
    assert float(requests[0]["value"][1]) >= CONFIG.min_requests


def test_a_canary_failing_from_its_first_request_never_reads_pass(recorded):
    provider = PrometheusMetricsProvider(recorded.url, timeout_s=5)
    verdicts = {}
    for second in range(-30, 300, 5):
        at = START + timedelta(seconds=second)
        report = analyze(provider, CONFIG, "born-failing", "4", "3", at, STEP, step_started_at=START)
        verdicts[second] = report.verdict
        errors = next(c for c in report.checks if c.check == "canary_vs_stable_errors")
        assert report.verdict != Verdict.PASS, (second, report.reason)
        if errors.canary_requests:  # whenever the canary's requests are counted, its errors are too
            assert errors.canary_errors >= 0.05 * errors.canary_requests * 0.5
    # It fails from the first scrape that holds its errors, and stays failed.
    assert verdicts[15] == Verdict.FAIL
    assert all(v == Verdict.FAIL for s, v in verdicts.items() if s >= 15)
