"""POST /api/v1/alerts/alertmanager: an alert acts on its model by the runbook policy, once, audited."""

import json
import logging

import pytest
from rest_framework.test import APIClient

from controlplane.accounts import issue_token
from controlplane.roles import Role
from oncall import services as oncall
from oncall.models import HandledAlert
from oncall.services import set_runbook_policy
from registry.models import AliasMove, AuditEvent
from rollouts import services
from rollouts.choices import Phase, RolloutKind
from rollouts.models import Rollout
from tests.factories import set_target
from tests.oncall.conftest import alert, notification

pytestmark = pytest.mark.django_db
URL = "/api/v1/alerts/alertmanager"


@pytest.fixture
def alertmanager(db):
    """The oncall token as Alertmanager sends it: `http_config.authorization`, type Bearer."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token('alertmanager', Role.ONCALL)}")
    return client


def rollback_on_burn(model, **policy):
    set_runbook_policy(model, {"actions": {"MlcpModelErrorBudgetBurn": "rollback"}, **policy}, actor="test",
                       reason="test setup")


def send(client, *alerts):
    response = client.post(URL, notification(*alerts), format="json")
    assert response.status_code == 200, response.content
    return response.json()["handled"]


@pytest.fixture
def canary(resnet, make_version):
    set_target(resnet)
    make_version(resnet, "deployed", production=True)
    rollout = services.start_rollout(resnet, make_version(resnet), actor="ci")
    return services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller")


def test_a_firing_alert_rolls_back_the_rollout_in_flight(alertmanager, resnet, canary):
    rollback_on_burn(resnet)
    firing = alert(version="2", fingerprint="f00d")
    (handled,) = send(alertmanager, firing)
    assert (handled["outcome"], handled["rollout"], handled["duplicate"]) == ("acted", canary.pk, False)
    canary.refresh_from_db()
    assert (canary.phase, canary.retreat_phase) == (Phase.ROLLING_BACK, Phase.ROLLED_BACK)
    event = canary.events.get(new=Phase.ROLLING_BACK)
    assert event.actor == "alertmanager" and "MlcpModelErrorBudgetBurn" in event.reason and "f00d" in event.reason
    audit = AuditEvent.objects.get(action="alert.rollback")
    assert (audit.model_name, audit.version_number, audit.actor) == ("resnet", 2, "alertmanager")
    assert audit.detail["fingerprint"] == "f00d" and audit.detail["labels"] == firing["labels"]
    assert audit.detail["annotations"] == firing["annotations"] and audit.detail["outcome"] == "acted"


def test_the_same_alert_delivered_twice_acts_once(alertmanager, resnet, released):
    rollback_on_burn(resnet)
    firing = alert(fingerprint="beef")
    (first,) = send(alertmanager, firing)
    (again,) = send(alertmanager, firing)
    assert (first["outcome"], again["outcome"], again["duplicate"], again["rollout"]) == (
        "acted", "acted", True, first["rollout"])
    assert Rollout.objects.filter(model=resnet, kind=RolloutKind.ROLLBACK).count() == 1
    assert HandledAlert.objects.count() == 1 and AuditEvent.objects.filter(action="alert.rollback").count() == 1


def test_another_alert_while_the_rollback_runs_starts_no_second_one(alertmanager, resnet, released):
    rollback_on_burn(resnet)
    send(alertmanager, alert(fingerprint="aa01"))
    (second,) = send(alertmanager, alert(fingerprint="aa02"))
    assert second["outcome"] == "skipped" and "already a rollback" in second["detail"]
    assert Rollout.objects.filter(model=resnet, kind=RolloutKind.ROLLBACK).count() == 1


def test_production_promoted_within_the_window_is_rolled_back_to_the_previous_version(alertmanager, resnet, released):
    v1, v2 = released
    rollback_on_burn(resnet)
    (handled,) = send(alertmanager, alert(version=str(v2.number)))
    rollback = Rollout.objects.get(pk=handled["rollout"])
    assert (rollback.kind, rollback.version, rollback.stable_version) == (RolloutKind.ROLLBACK, v1, v2)
    assert "MlcpModelErrorBudgetBurn" in rollback.events.get().reason


def test_production_promoted_before_the_window_is_left_alone(alertmanager, resnet, released):
    rollback_on_burn(resnet, rollback_window_s=600)
    AliasMove.objects.filter(model=resnet).update(at="2020-01-01T00:00:00Z")
    (handled,) = send(alertmanager, alert())
    assert handled["outcome"] == "skipped" and not Rollout.objects.filter(kind=RolloutKind.ROLLBACK).exists()


def test_a_resolved_alert_rolls_nothing_back(alertmanager, resnet, released):
    rollback_on_burn(resnet)
    (handled,) = send(alertmanager, alert(status="resolved"))
    assert handled["outcome"] == "resolved"
    assert not Rollout.objects.filter(kind=RolloutKind.ROLLBACK).exists()
    assert AuditEvent.objects.filter(action="alert.rollback", detail__status="resolved").count() == 1


def test_dry_run_records_what_it_would_have_done(alertmanager, resnet, canary):
    rollback_on_burn(resnet, dry_run=True)
    (handled,) = send(alertmanager, alert())
    assert handled["outcome"] == "dry_run" and f"would roll back rollout {canary.pk}" in handled["detail"]
    canary.refresh_from_db()
    assert canary.phase == Phase.PROGRESSING
    assert AuditEvent.objects.get(action="alert.rollback").detail["dry_run"] is True


def test_pause_holds_the_rollout_in_flight(alertmanager, resnet, canary):
    set_runbook_policy(resnet, {"actions": {"*": "pause"}}, actor="test", reason="test setup")
    (handled,) = send(alertmanager, alert(alertname="SomeLatencyAlert"))
    canary.refresh_from_db()
    assert handled["outcome"] == "acted" and canary.phase == Phase.PAUSED


def test_without_a_policy_an_alert_is_recorded_on_the_model_only(alertmanager, resnet, canary):
    (handled,) = send(alertmanager, alert())
    canary.refresh_from_db()
    assert handled["outcome"] == "annotated" and canary.phase == Phase.PROGRESSING
    assert AuditEvent.objects.filter(action="alert.annotate", model_name="resnet").exists()


def test_a_refusal_of_the_rollout_services_is_recorded_not_raised(alertmanager, resnet, make_version):
    set_target(resnet)
    make_version(resnet, "deployed", production=True)  # promoted by hand just now, nothing before it
    rollback_on_burn(resnet)
    (handled,) = send(alertmanager, alert())
    assert handled["outcome"] == "refused" and "no_previous_version" in handled["detail"]


def test_an_alert_naming_no_registered_model_is_answered_200_and_recorded(alertmanager, db):
    handled = send(alertmanager, alert("no-such-model"), alert(None))
    assert [h["outcome"] for h in handled] == ["ignored", "ignored"]
    assert AuditEvent.objects.filter(action="alert.ignored").count() == 2


@pytest.mark.parametrize("role", [Role.VIEWER, Role.CI, Role.APPROVER])
def test_a_token_without_oncall_is_refused(role, resnet, released):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(f'{role}-am', role)}")
    response = client.post(URL, notification(alert()), format="json")
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert not HandledAlert.objects.exists()


def test_no_token_is_refused(client, db):
    response = client.post(URL, notification(alert()), content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


def test_a_malformed_notification_changes_nothing(alertmanager, resnet, canary):
    rollback_on_burn(resnet)
    body = notification(alert(), {**alert(), "fingerprint": "nope"})
    response = alertmanager.post(URL, body, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_notification")
    canary.refresh_from_db()
    assert canary.phase == Phase.PROGRESSING and not HandledAlert.objects.exists()


@pytest.mark.parametrize("labels, annotations, code", [
    ({"alertname": "A" * 129}, {}, "value_too_long"),  # HandledAlert.alertname holds 128: a 500 on PostgreSQL before
    # A lone surrogate: jsonb refuses it; the API's JSON parser refuses the body before the receiver reads it.
    ({"alertname": "Burn", "team": "\ud800"}, {}, "malformed_request"),
    ({"alertname": "Burn"}, {"summary": "\udfff"}, "malformed_request"),
])
def test_an_alert_mlcp_cannot_store_refuses_its_group_before_any_alert_acts(alertmanager, resnet, canary, labels,
                                                                             annotations, code):
    rollback_on_burn(resnet)
    bad = {**alert(), "labels": {"model": "resnet", **labels}, "annotations": annotations}
    # json.dumps, not the test client's renderer: it writes "\ud800" as the escape Alertmanager would send.
    response = alertmanager.post(URL, json.dumps(notification(alert(), bad)), content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, code)
    canary.refresh_from_db()
    assert canary.phase == Phase.PROGRESSING and not HandledAlert.objects.exists()


@pytest.mark.parametrize("body, code", [(b"{not json", "malformed_request"), (b"[]", "invalid_notification"),
                                        (b"", "unsupported_version")])
def test_a_body_that_is_no_notification_is_a_400(alertmanager, body, code):
    response = alertmanager.post(URL, body, content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, code)


def test_an_oversized_body_is_refused_before_it_is_read(alertmanager, settings):
    response = alertmanager.post(URL, b"{" + b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + b"}",
                                 content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")


def test_an_alert_naming_the_stable_version_leaves_the_canary_alone(alertmanager, resnet, canary):
    rollback_on_burn(resnet)  # production is v1, the canary v2
    (handled,) = send(alertmanager, alert(version="1"))
    assert handled["outcome"] == "skipped" and "about v1" in handled["detail"]
    canary.refresh_from_db()
    assert canary.phase == Phase.PROGRESSING


@pytest.mark.parametrize("label", ["v2", "\u00b2", "\u0662"])  # "²" was a 500, "٢" read as 2
def test_an_unreadable_version_label_rolls_nothing_back(alertmanager, resnet, released, label):
    rollback_on_burn(resnet)
    (handled,) = send(alertmanager, alert(version=label))
    assert handled["outcome"] == "skipped" and "no version number" in handled["detail"]
    assert not Rollout.objects.filter(kind=RolloutKind.ROLLBACK).exists()
    assert AuditEvent.objects.get(action="alert.rollback").version_number is None


def test_a_firing_delivery_after_the_resolved_one_acts_on_nothing(alertmanager, resnet, released):
    # Alertmanager's HA peers and retries do not keep a group's notifications in order.
    rollback_on_burn(resnet)
    send(alertmanager, alert(status="resolved", fingerprint="cafe"))
    (late,) = send(alertmanager, alert(status="firing", fingerprint="cafe"))
    assert late["outcome"] == "skipped" and "already resolved" in late["detail"]
    assert not Rollout.objects.filter(kind=RolloutKind.ROLLBACK).exists()


def test_a_firing_alert_that_fires_again_later_still_acts(alertmanager, resnet, released):
    # Resolved, then firing with a new startsAt: a new firing of the same alert, not a late delivery.
    rollback_on_burn(resnet)
    send(alertmanager, alert(status="resolved", fingerprint="cafe"))
    (again,) = send(alertmanager, alert(fingerprint="cafe", starts_at="2026-11-30T13:00:00Z"))
    assert again["outcome"] == "acted"


@pytest.fixture
def failing_alert(monkeypatch):
    """Handling the alert with fingerprint "bad0" raises, as a bug of mlcp's would."""
    decide = oncall.decide

    def decide_or_fail(policy, alert, situation, now):
        if alert.fingerprint == "bad0":
            raise RuntimeError("a bug")
        return decide(policy, alert, situation, now)

    monkeypatch.setattr(oncall, "decide", decide_or_fail)
    return monkeypatch


def test_an_alert_whose_handling_fails_is_recorded_and_the_others_still_act(alertmanager, resnet, released,
                                                                             failing_alert, caplog):
    # A 500 would have Alertmanager re-send the whole group, and the valid alert would never be handled.
    rollback_on_burn(resnet)
    with caplog.at_level(logging.ERROR, logger="oncall.services"):
        failed, acted = send(alertmanager, alert(fingerprint="bad0"), alert(fingerprint="600d"))
    assert (failed["outcome"], acted["outcome"]) == ("failed", "acted")
    assert HandledAlert.objects.get(fingerprint="bad0").outcome == "failed"
    assert Rollout.objects.filter(kind=RolloutKind.ROLLBACK).count() == 1
    assert AuditEvent.objects.get(action="alert.failed").model_name == "resnet"
    assert "bad0" in caplog.text and "RuntimeError: a bug" in caplog.text


def test_a_failed_alert_is_handled_again_on_its_next_delivery(alertmanager, resnet, released, failing_alert):
    # The failure may have been passing (a lost connection); nothing was done, so trying again is safe.
    rollback_on_burn(resnet)
    send(alertmanager, alert(fingerprint="bad0"))
    failing_alert.undo()
    (handled,) = send(alertmanager, alert(fingerprint="bad0"))
    assert (handled["outcome"], handled["duplicate"]) == ("acted", False)
    assert HandledAlert.objects.get().outcome == "acted"
