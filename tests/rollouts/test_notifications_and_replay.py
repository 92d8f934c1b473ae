"""Replaying an analysis at a past instant (the rollout webhooks are tested in test_webhooks.py)."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from registry.models import RegisteredModel

pytestmark = pytest.mark.django_db


def test_analyze_command_replays_the_checks_with_queries(prometheus, split_rollout, settings):
    settings.PROMETHEUS_URL = prometheus.url
    RegisteredModel.objects.create(name=split_rollout.model)
    at = split_rollout.start + timedelta(minutes=15)
    out = StringIO()
    call_command("analyze", split_rollout.model, "--at", at.isoformat(), "--canary-version", "2",
                 "--stable-version", "1", stdout=out)
    text = out.getvalue()
    assert text.splitlines()[0].startswith("resnet-split canary 2 vs stable 1") and "FAIL" in text.splitlines()[0]
    assert "latency_p95" in text and 'track="canary"' in text and "canary.requests" in text


def test_analysis_endpoint_returns_the_same_evidence_as_the_command(prometheus, split_rollout, settings, viewer):
    settings.PROMETHEUS_URL = prometheus.url
    RegisteredModel.objects.create(name=split_rollout.model)
    at = (split_rollout.start + timedelta(minutes=15)).isoformat()
    out = StringIO()
    call_command("analyze", split_rollout.model, "--at", at, "--canary-version", "2", "--stable-version", "1",
                 "--json", stdout=out)
    response = viewer.get(f"/api/v1/models/{split_rollout.model}/analysis",
                          {"at": at, "canary_version": 2, "stable_version": 1})
    assert response.status_code == 200
    assert response.json() == json.loads(out.getvalue())
    assert response.json()["verdict"] == "fail"


def test_analysis_endpoint_refuses_a_malformed_instant(resnet, viewer):
    response = viewer.get("/api/v1/models/resnet/analysis", {"at": "yesterday"})
    assert response.status_code == 400 and response.json()["code"] == "invalid_time"
