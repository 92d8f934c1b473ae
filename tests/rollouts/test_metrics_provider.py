"""The Prometheus metrics provider and `analyze`, against a real Prometheus
holding recorded traffic (see conftest.py)."""

import json
import time
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from controlplane.errors import UpstreamUnavailable
from rollouts.analysis import AnalysisConfig, BurnRateResult, Verdict, combine, quantile_from_buckets
from rollouts.metrics import MetricsUnavailable, PrometheusMetricsProvider, PromQLTemplates, analyze
from tests.support.servers import free_port

STEP = timedelta(minutes=10)


def _observe(url, rollout, at, windows=(600.0,), **kw):
    provider = PrometheusMetricsProvider(url, timeout_s=5, **kw)
    return provider.observe(rollout.model, rollout.canary_version, rollout.stable_version, at, windows, 600.0)


def test_provider_reads_canary_and_stable_separately(prometheus, split_rollout):
    at = split_rollout.start + timedelta(minutes=15)
    observed = _observe(prometheus.url, split_rollout, at)
    canary_phase, stable_phase = split_rollout.canary[0], split_rollout.stable[0]

    canary, stable = observed.canary.counts[600.0], observed.stable.counts[600.0]
    assert canary.total == pytest.approx(canary_phase.requests_per_s * 600)
    assert canary.errors == pytest.approx(canary_phase.requests_per_s * 600 * canary_phase.error_ratio)
    assert stable.total == pytest.approx(stable_phase.requests_per_s * 600)
    # Prometheus' histogram_quantile on the recorded buckets agrees with ours.
    canary_buckets = [(le, f * canary_phase.requests_per_s * 600) for le, f in canary_phase.latency_cdf.items()]
    stable_buckets = [(le, f * stable_phase.requests_per_s * 600) for le, f in stable_phase.latency_cdf.items()]
    assert observed.canary.p95_s == pytest.approx(quantile_from_buckets(0.95, canary_buckets))
    assert observed.stable.p95_s == pytest.approx(quantile_from_buckets(0.95, stable_buckets))
    assert observed.canary.p95_s > observed.stable.p95_s


def test_arm_with_traffic_but_no_error_series_reads_zero_errors(prometheus, split_rollout):
    # Stable never failed, so no code="500" series exists for it.
    observed = _observe(prometheus.url, split_rollout, split_rollout.start + timedelta(minutes=15))
    assert observed.stable.counts[600.0].errors == 0.0


def test_no_series_is_no_data_not_zero(prometheus, split_rollout):
    at = split_rollout.start + timedelta(minutes=15)
    provider = PrometheusMetricsProvider(prometheus.url, timeout_s=5)
    observed = provider.observe(split_rollout.model, split_rollout.canary_version, "never-deployed", at, [600.0], 600.0)
    assert observed.canary.counts[600.0] is not None
    assert observed.stable.counts[600.0] is None
    assert observed.stable.p95_s is None

    report = analyze(provider, AnalysisConfig(), "no-such-model", "2", "1", at, STEP)
    assert report.verdict == Verdict.INCONCLUSIVE
    assert {c.verdict for c in report.checks} == {Verdict.INCONCLUSIVE}


def test_prometheus_down_raises_metrics_unavailable(split_rollout):
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MetricsUnavailable) as raised:
        _observe(closed, split_rollout, split_rollout.start)
    assert isinstance(raised.value, UpstreamUnavailable)
    assert raised.value.code == "metrics_unavailable"
    assert raised.value.context["url"] == closed


def test_prometheus_error_response_raises_metrics_unavailable(prometheus, split_rollout):
    broken = PromQLTemplates(counters="last_over_time(mlcp_model_requests_total{$selector}[$lookback]")
    with pytest.raises(MetricsUnavailable, match="400"):
        _observe(prometheus.url, split_rollout, split_rollout.start, templates=broken)


def test_analyze_at_past_instant_replays_recorded_incident(prometheus, recorded_incident):
    provider = PrometheusMetricsProvider(prometheus.url, timeout_s=5)
    incident_start = recorded_incident.canary[0].until
    args = (provider, AnalysisConfig(), recorded_incident.model, recorded_incident.canary_version,
            recorded_incident.stable_version)

    before = analyze(*args, incident_start - timedelta(minutes=1), STEP)
    during = analyze(*args, incident_start + timedelta(minutes=2), STEP)
    replayed = analyze(*args, incident_start + timedelta(minutes=2), STEP)

    assert before.verdict == Verdict.PASS, before.reason
    assert during.verdict == Verdict.FAIL
    failed = {c.check for c in during.checks if c.verdict == Verdict.FAIL}
    assert {"burn_rate", "canary_vs_stable_errors"} <= failed
    assert replayed.evidence() == during.evidence()


def test_evidence_keeps_every_query_and_value(prometheus, recorded_incident):
    provider = PrometheusMetricsProvider(prometheus.url, timeout_s=5)
    at = recorded_incident.canary[0].until + timedelta(minutes=2)
    report = analyze(provider, AnalysisConfig(), recorded_incident.model, recorded_incident.canary_version,
                     recorded_incident.stable_version, at, STEP)
    evidence = json.loads(json.dumps(report.evidence(), allow_nan=False))
    windows = report.observation.windows_s
    # Per arm: the counters' raw values at the end, and at each window's start.
    assert len(evidence["queries"]) == 2 * (1 + len(windows))
    canary_end = next(q for q in evidence["queries"] if q["name"] == "canary.counters@end")
    assert 'track="canary"' in canary_end["query"] and 'version="8"' in canary_end["query"]
    canary_start = next(q for q in evidence["queries"] if q["name"] == "canary.counters@-600s")
    assert canary_end["value"] - canary_start["value"] == report.observation.canary.counts[600.0].total


def test_scraped_endpoint_is_read_within_seconds(prometheus):
    registry = CollectorRegistry()
    requests = Counter("mlcp_model_requests", "requests", ["model", "version", "track", "code"], registry=registry)
    requests.labels("live-model", "3", "canary", "200").inc(7)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus.scrape([f"127.0.0.1:{port}"])
        deadline, result = time.monotonic() + 120, []  # a bound for "never"; a scrape comes each second
        while not result and time.monotonic() < deadline:
            result = prometheus.query('mlcp_model_requests_total{model="live-model"}')
            time.sleep(0.2)
        assert result and float(result[0]["value"][1]) == 7.0
    finally:
        prometheus.scrape([])
        server.shutdown()
        thread.join(timeout=5)


def test_step_counts_start_when_the_step_started(prometheus, recorded_incident):
    # Two minutes into a step, the error split must not count the step before,
    # which ran at another traffic share.
    provider = PrometheusMetricsProvider(prometheus.url, timeout_s=5)
    started = recorded_incident.canary[0].until
    report = analyze(provider, AnalysisConfig(), recorded_incident.model, recorded_incident.canary_version,
                     recorded_incident.stable_version, started + timedelta(minutes=2), STEP,
                     step_started_at=started)
    assert report.step_window_s == 120.0
    sequential = next(c for c in report.checks if c.check == "canary_vs_stable_errors")
    assert sequential.canary_requests == pytest.approx(recorded_incident.canary[1].requests_per_s * 120)


def test_any_fail_fails_and_any_inconclusive_holds():
    passed = BurnRateResult(Verdict.PASS, "ok")
    held = BurnRateResult(Verdict.INCONCLUSIVE, "thin")
    failed = BurnRateResult(Verdict.FAIL, "burning")
    assert combine([passed, held, failed]).verdict == Verdict.FAIL
    assert combine([passed, held]).verdict == Verdict.INCONCLUSIVE
    assert combine([passed, passed]).verdict == Verdict.PASS
    assert combine([]).verdict == Verdict.INCONCLUSIVE
