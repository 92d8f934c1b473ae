"""Alertmanager's webhook payload is read strictly, before anything acts."""

import pytest

from controlplane.errors import InvalidInput
from oncall.alertmanager import MAX_ALERTS, MAX_LABELS, parse_notification
from tests.oncall.conftest import alert, notification


def refusal(body) -> str:
    with pytest.raises(InvalidInput) as raised:
        parse_notification(body)
    return raised.value.code


def test_a_version_4_notification_reads_into_alerts():
    parsed = parse_notification(notification(alert("fraud", version="3", namespace="ml", fingerprint="ab12")))
    (only,) = parsed.alerts
    assert (only.name, only.model, only.version, only.namespace, only.fingerprint, only.status) == (
        "MlcpModelErrorBudgetBurn", "fraud", 3, "ml", "ab12", "firing")
    assert only.starts_at.isoformat() == "2026-11-30T12:00:00.123456+00:00"  # nanoseconds cut, the same each time
    assert only.annotations["summary"] == "fraud is burning its error budget"


def test_only_payload_version_4_is_read():
    assert refusal({**notification(alert()), "version": "3"}) == "unsupported_version"
    assert refusal([notification(alert())]) == "invalid_notification"


@pytest.mark.parametrize("change", [
    {"fingerprint": "not hex"}, {"fingerprint": 12}, {"startsAt": "yesterday"}, {"startsAt": "2026-02-30T00:00:00Z"},
    {"startsAt": "2026-11-30T12:00:00"}, {"status": "pending"}, {"labels": {"model": "resnet"}},
    {"labels": ["alertname"]}, {"labels": {"alertname": "A", "bad-name": "x"}}, {"labels": {"alertname": 5}},
    {"annotations": {"summary": "\x00"}},
])
def test_a_malformed_alert_is_refused(change):
    assert refusal(notification({**alert(), **change})) == "invalid_notification"


def test_sizes_are_capped():
    assert refusal(notification(*[alert() for _ in range(MAX_ALERTS + 1)])) == "too_many_alerts"
    many = {f"l{i}": "x" for i in range(MAX_LABELS)}
    assert refusal(notification({**alert(), "labels": {"alertname": "A", **many}})) == "too_many_labels"
    assert refusal(notification(alert(description="x" * 5000))) == "value_too_long"


def test_a_version_label_that_is_not_a_number_names_no_version():
    (only,) = parse_notification(notification(alert(version="canary"))).alerts
    assert only.version is None
