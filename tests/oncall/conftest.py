"""Builders of Alertmanager notifications, and a model with two production versions behind it."""

import itertools

import pytest

from rollouts import services
from tests.factories import set_target

_fingerprints = itertools.count(0xA1)


def alert(model="resnet", alertname="MlcpModelErrorBudgetBurn", status="firing", *, fingerprint=None,
          starts_at="2026-11-30T12:00:00.123456789Z", **labels) -> dict:
    """One alert as Alertmanager sends it; a fresh fingerprint unless one is given."""
    named = {"alertname": alertname, "severity": "page", **({"model": model} if model else {}), **labels}
    return {"status": status, "labels": named,
            "annotations": {"summary": f"{model} is burning its error budget", "runbook_url": "https://x/r#a"},
            "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
            "fingerprint": fingerprint or f"{next(_fingerprints):016x}"}


def notification(*alerts, status=None) -> dict:
    """Alertmanager's webhook payload, version 4."""
    return {"version": "4", "groupKey": '{}:{alertname="MlcpModelErrorBudgetBurn"}', "truncatedAlerts": 0,
            "status": status or alerts[0]["status"], "receiver": "mlcp", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


@pytest.fixture
def released(resnet, make_version):
    """resnet: v1 was production, v2 promoted over it by a rollout just now; returns (v1, v2)."""
    set_target(resnet)
    v1 = make_version(resnet, "deployed", production=True)
    v2 = make_version(resnet)
    services.finish_promotion(services.promote(services.start_rollout(resnet, v2, actor="ci"), actor="oncall",
                                               full=True))
    return v1, v2
