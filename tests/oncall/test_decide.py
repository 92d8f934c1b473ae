"""What one alert does to its model: `oncall.policy.decide`, with plain values."""

from datetime import datetime, timedelta, timezone

import pytest

from controlplane.errors import InvalidInput
from oncall.alertmanager import Alert
from oncall.policy import DEFAULT_POLICY, Do, InFlight, Policy, Situation, decide

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
ROLLBACK = Policy(actions={"Burn": "rollback"}, rollback_window_s=3600)


def firing(name="Burn", status="firing", **labels) -> Alert:
    return Alert(status, {"alertname": name, "model": "resnet", **labels}, {}, NOW, "ab")


def production(promoted_minutes_ago=10, version=2) -> Situation:
    return Situation(None, version, NOW - timedelta(minutes=promoted_minutes_ago))


def canary(phase="progressing", kind="canary") -> Situation:
    return Situation(InFlight(7, phase, kind, 3), 2, NOW - timedelta(days=3))


def test_a_model_nobody_configured_records_alerts_only():
    assert decide(DEFAULT_POLICY, firing(), canary(), NOW).do == Do.ANNOTATE


def test_rollback_takes_the_rollout_in_flight_first():
    decision = decide(ROLLBACK, firing(), canary(), NOW)
    assert (decision.do, decision.rollout) == (Do.ROLLBACK_ROLLOUT, 7)


@pytest.mark.parametrize("situation", [canary(kind="rollback"), canary(phase="rolling_back")])
def test_a_rollback_already_under_way_is_not_started_twice(situation):
    assert decide(ROLLBACK, firing(), situation, NOW).do == Do.SKIP


def test_production_promoted_within_the_window_is_rolled_back():
    assert decide(ROLLBACK, firing(), production(promoted_minutes_ago=59), NOW).do == Do.ROLLBACK_PRODUCTION


def test_production_promoted_before_the_window_is_left_to_people():
    decision = decide(ROLLBACK, firing(), production(promoted_minutes_ago=61), NOW)
    assert decision.do == Do.SKIP and "mlcp rollback" in decision.why


def test_an_alert_about_another_version_than_production_rolls_nothing_back():
    assert decide(ROLLBACK, firing(version="1"), production(version=2), NOW).do == Do.SKIP
    assert decide(ROLLBACK, firing(version="2"), production(version=2), NOW).do == Do.ROLLBACK_PRODUCTION


def test_an_alert_about_another_version_than_the_rollout_in_flight_leaves_it_alone():
    # The canary is v3; an alert on the stable v2 (most of the traffic) does not blame the canary.
    for policy in (ROLLBACK, Policy(actions={"*": "pause"})):
        decision = decide(policy, firing(version="2"), canary(), NOW)
        assert decision.do == Do.SKIP and "about v2" in decision.why and "v3" in decision.why


def test_an_alert_about_the_version_in_flight_acts_on_its_rollout():
    assert decide(ROLLBACK, firing(version="3"), canary(), NOW).do == Do.ROLLBACK_ROLLOUT
    assert decide(Policy(actions={"*": "pause"}), firing(version="3"), canary(), NOW).do == Do.PAUSE_ROLLOUT


@pytest.mark.parametrize("situation", [canary(), production()])
@pytest.mark.parametrize("label", ["v3", "\u00b2", "\u0662"])
def test_an_alert_whose_version_label_is_unreadable_changes_nothing(situation, label):
    # Read as "no version", it would roll back whatever is in flight or in production.
    for policy in (ROLLBACK, Policy(actions={"*": "pause"})):
        decision = decide(policy, firing(version=label), situation, NOW)
        assert decision.do == Do.SKIP and "no version number" in decision.why


def test_a_resolved_alert_never_acts():
    assert decide(ROLLBACK, firing(status="resolved"), canary(), NOW).do == Do.RESOLVED


def test_pause_holds_a_progressing_rollout_and_nothing_else():
    pause = Policy(actions={"*": "pause"})
    assert decide(pause, firing("Anything"), canary(), NOW).do == Do.PAUSE_ROLLOUT
    assert decide(pause, firing("Anything"), canary(phase="paused"), NOW).do == Do.SKIP
    assert decide(pause, firing("Anything"), production(), NOW).do == Do.SKIP


def test_named_alerts_win_over_the_wildcard():
    policy = Policy(actions={"*": "rollback", "Latency": "annotate"})
    assert decide(policy, firing("Latency"), canary(), NOW).do == Do.ANNOTATE
    assert decide(policy, firing("Burn"), canary(), NOW).do == Do.ROLLBACK_ROLLOUT


@pytest.mark.parametrize("raw", [
    {"actions": {"Burn": "delete"}}, {"actions": {"bad name": "pause"}}, {"actions": ["Burn"]},
    {"rollback_window_s": -1}, {"rollback_window_s": 8 * 24 * 3600}, {"rollback_window_s": True},
    {"dry_run": "yes"}, {"other": 1}, {"actions": {f"A{i}": "pause" for i in range(51)}},
    {"actions": {"Burn\n": "pause"}},
])
def test_a_malformed_policy_is_refused(raw):
    with pytest.raises(InvalidInput) as raised:
        Policy.from_json(raw)
    assert raised.value.code == "invalid_runbook_policy"


def test_an_alert_about_another_namespace_leaves_the_model_alone():
    here = Situation(InFlight(7, "progressing", "canary", 3), 2, NOW - timedelta(days=3), namespace="vision")
    assert decide(ROLLBACK, firing(namespace="staging"), here, NOW).do == Do.SKIP
    assert decide(ROLLBACK, firing(namespace="vision"), here, NOW).do == Do.ROLLBACK_ROLLOUT
    assert decide(ROLLBACK, firing(), here, NOW).do == Do.ROLLBACK_ROLLOUT  # no label: no other deployment named
