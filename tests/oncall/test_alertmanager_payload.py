"""Alertmanager's webhook payload is read strictly, before anything acts."""

import pytest

from controlplane.errors import InvalidInput
from oncall.alertmanager import MAX_ALERTS, MAX_LABELS, MAX_NAME, parse_notification
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
    # `$` would match before a trailing newline: "beef\n" is not Alertmanager's fingerprint "beef".
    {"fingerprint": "beef\n"}, {"labels": {"alertname": "A", "team\n": "x"}},
    # A lone surrogate (JSON "\ud800") is no text PostgreSQL can store.
    {"labels": {"alertname": "A", "team": "\ud800"}}, {"annotations": {"summary": "a\udfffb"}},
    {"labels": {"alertname": "A\ud800"}}, {"generatorURL": "\ud800"},
])
def test_a_malformed_alert_is_refused(change):
    assert refusal(notification({**alert(), **change})) == "invalid_notification"


def test_sizes_are_capped():
    assert refusal(notification(*[alert() for _ in range(MAX_ALERTS + 1)])) == "too_many_alerts"
    many = {f"l{i}": "x" for i in range(MAX_LABELS)}
    assert refusal(notification({**alert(), "labels": {"alertname": "A", **many}})) == "too_many_labels"
    assert refusal(notification(alert(description="x" * 5000))) == "value_too_long"


def test_an_alertname_longer_than_mlcp_stores_is_refused():
    # Other label values may be 1024 characters; the alert name is kept in a column of 128.
    assert parse_notification(notification(alert(alertname="A" * MAX_NAME))).alerts[0].name == "A" * MAX_NAME
    assert refusal(notification(alert(alertname="A" * (MAX_NAME + 1)))) == "value_too_long"


@pytest.mark.parametrize("label, version", [("3", 3), ("0042", 42), ("999999999", 999999999)])
def test_a_version_label_of_ascii_digits_names_that_version(label, version):
    (only,) = parse_notification(notification(alert(version=label))).alerts
    assert (only.version, only.version_unreadable) == (version, False)


def test_an_alert_without_a_version_label_names_no_version():
    for labels in ({}, {"version": ""}):  # an empty label is no label, as in Prometheus
        (only,) = parse_notification(notification(alert(**labels))).alerts
        assert (only.version, only.version_unreadable) == (None, False)


# Superscript two and Arabic-Indic two pass str.isdigit(); int() refuses the first and reads the second as 2.
@pytest.mark.parametrize("label", ["canary", "v1", "1.0", " 1", "1\n", "\u00b2", "\u0662", "1234567890"])
def test_a_version_label_that_is_no_version_number_is_unreadable_not_absent(label):
    (only,) = parse_notification(notification(alert(version=label))).alerts
    assert (only.version, only.version_unreadable) == (None, True)
