"""Probes and /metrics: unauthenticated, cheap, and telling the truth about the rows behind them."""

from datetime import datetime, timedelta, timezone
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from controlplane import metrics
from registry.models import GateResult
from rollouts.choices import Phase
from rollouts.controller import acquire_lease, begin_tick, finish_tick
from rollouts.models import AnalysisRun, Rollout
from tests.factories import TARGET

T = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def anonymous():
    return Client()


@pytest.fixture(autouse=True)
def fresh_metrics(settings, monkeypatch):
    """Every scrape renders anew, and no rendering is left over from another test."""
    settings.MLCP_METRICS_CACHE_S = 0
    settings.MLCP_METRICS_TOKEN = ""
    monkeypatch.setattr(metrics, "_rendered", metrics._Rendered())


# ------------------------------------------------------------------ probes

@pytest.mark.django_db
def test_healthz_answers_without_asking_the_database(anonymous, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = anonymous.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_readyz_is_ready_with_a_database_and_a_writable_artifact_store(anonymous, stored_files):
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "artifact_store": "ok"}}
    assert stored_files() == []  # the write check leaves nothing behind


@pytest.mark.django_db
def test_readyz_is_unavailable_when_the_database_is_broken(anonymous):
    with mock.patch("controlplane.health.connection.cursor", side_effect=OperationalError("connection refused")):
        response = anonymous.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["checks"]["database"], body["checks"]["artifact_store"]) == (
        "unavailable", "error: OperationalError", "ok")


@pytest.mark.django_db
def test_readyz_is_unavailable_when_the_artifact_store_cannot_be_written(anonymous, settings, tmp_path):
    settings.MLCP_ARTIFACT_DIR = tmp_path / "not-a-directory"
    settings.MLCP_ARTIFACT_DIR.write_text("")
    response = anonymous.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["artifact_store"].startswith("error: ")


# ----------------------------------------------------------------- metrics

def _scrape(client, **headers) -> dict:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def _samples(family, suffix="") -> dict:
    name = family.name + suffix
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name == name}


@pytest.fixture
def rows(resnet, make_version):
    """Rollouts in three phases, six analyses, four gate results (three timed) and two controller ticks."""
    v1, v2, v3 = make_version(resnet), make_version(resnet), make_version(resnet)
    done = Rollout.objects.create(model=resnet, version=v1, traffic=TARGET, phase=Phase.SUCCEEDED)
    Rollout.objects.create(model=resnet, version=v2, traffic=TARGET, phase=Phase.ABORTED)
    Rollout.objects.create(model=resnet, version=v3, traffic=TARGET, phase=Phase.PROGRESSING)
    for verdict in ["pass", "pass", "pass", "fail", "inconclusive", "inconclusive"]:
        AnalysisRun.objects.create(rollout=done, step=0, at=T, verdict=verdict)
    for version, gate, verdict, seconds in [(v1, "validation", "pass", 3), (v2, "validation", "pass", 20),
                                            (v1, "golden_set", "fail", 400), (v3, "validation", "pending", None)]:
        GateResult.objects.create(version=version, gate=gate, verdict=verdict,
                                  started_at=T if seconds else None,
                                  finished_at=T + timedelta(seconds=seconds) if seconds else None)
    assert acquire_lease("pod-a", ttl_s=30, now=T)
    for started, duration in [(T, 0.3), (T + timedelta(seconds=10), 7.0)]:
        begin_tick("pod-a", started)
        finish_tick("pod-a", finished_at=started + timedelta(seconds=duration), duration_s=duration, reconciled=1)


def test_metrics_count_rollouts_by_phase(rows, anonymous):
    phases = _samples(_scrape(anonymous)["mlcp_rollouts"])
    assert phases[(("phase", "succeeded"),)] == 1
    assert phases[(("phase", "aborted"),)] == 1
    assert phases[(("phase", "progressing"),)] == 1
    assert phases[(("phase", "pending"),)] == 0  # every phase is there, so a dashboard's series never vanish


def test_metrics_show_the_controllers_ticks(rows, anonymous):
    families = _scrape(anonymous)
    ticks = families["mlcp_controller_tick_seconds"]
    assert ticks.type == "histogram"
    assert _samples(ticks, "_count") == {(): 2}
    assert _samples(ticks, "_sum") == {(): pytest.approx(7.3)}
    buckets = {labels[0][1]: value for labels, value in _samples(ticks, "_bucket").items()}
    assert (buckets["0.25"], buckets["0.5"], buckets["5"], buckets["10"], buckets["+Inf"]) == (0, 1, 1, 2, 2)
    last = T + timedelta(seconds=17)
    assert _samples(families["mlcp_controller_last_tick_timestamp_seconds"]) == {(): last.timestamp()}
    assert _samples(families["mlcp_controller_alive"]) == {(): 0}  # its last tick was in 2024


def test_metrics_count_analysis_verdicts(rows, anonymous):
    verdicts = _scrape(anonymous)["mlcp_analysis_verdicts"]
    assert verdicts.type == "counter"
    assert _samples(verdicts, "_total") == {(("verdict", "pass"),): 3, (("verdict", "fail"),): 1,
                                             (("verdict", "inconclusive"),): 2}


def test_metrics_count_gate_results_and_time_the_finished_ones(rows, anonymous):
    families = _scrape(anonymous)
    assert _samples(families["mlcp_gate_results"]) == {
        (("gate", "validation"), ("verdict", "pass")): 2, (("gate", "golden_set"), ("verdict", "fail")): 1,
        (("gate", "validation"), ("verdict", "pending")): 1}
    durations = families["mlcp_gate_duration_seconds"]
    validation = (("gate", "validation"), ("verdict", "pass"))
    assert _samples(durations, "_count") == {validation: 2, (("gate", "golden_set"), ("verdict", "fail")): 1}
    assert _samples(durations, "_sum")[validation] == pytest.approx(23.0)
    buckets = {dict(labels)["le"]: value for labels, value in _samples(durations, "_bucket").items()
               if dict(labels)["gate"] == "validation"}
    assert (buckets["1"], buckets["5"], buckets["15"], buckets["30"], buckets["+Inf"]) == (0, 1, 1, 2, 2)


def test_metrics_exist_before_anything_happened(anonymous, db):
    families = _scrape(anonymous)
    assert _samples(families["mlcp_controller_tick_seconds"], "_count") == {(): 0}
    assert _samples(families["mlcp_controller_last_tick_timestamp_seconds"]) == {(): 0}
    assert {"mlcp_rollouts", "mlcp_analysis_verdicts", "mlcp_gate_results", "mlcp_gate_duration_seconds"} <= set(
        families)


def test_one_scrape_is_six_queries_whatever_the_rows(rows, anonymous, django_assert_num_queries):
    with django_assert_num_queries(6):
        _scrape(anonymous)


def test_scrapes_within_the_cache_window_do_not_touch_the_database(rows, anonymous, settings,
                                                                    django_assert_num_queries):
    settings.MLCP_METRICS_CACHE_S = 60
    _scrape(anonymous)
    with django_assert_num_queries(0):
        _scrape(anonymous)


def test_metrics_token_is_required_once_set(rows, anonymous, settings):
    settings.MLCP_METRICS_TOKEN = "s3cret"
    assert anonymous.get("/metrics").status_code == 401
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert "mlcp_rollouts" in _scrape(anonymous, HTTP_AUTHORIZATION="Bearer s3cret")


def test_metrics_count_the_blobs_found_tampered(resnet, make_version, anonymous):
    assert _samples(_scrape(anonymous)["mlcp_blobs_tampered"]) == {(): 0}
    blob = make_version(resnet).blob
    blob.tampered_at, blob.tampered_digest = T, "0" * 64
    blob.save()
    assert _samples(_scrape(anonymous)["mlcp_blobs_tampered"]) == {(): 1}
