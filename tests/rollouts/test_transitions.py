"""The rollout lifecycle: one transitions table, compare-and-set moves, an event for each."""

import pytest

from controlplane.errors import IllegalTransition
from rollouts import services
from rollouts.choices import (ACTIVE, CONTROL_TARGETS, CONTROLS, TERMINAL, TRANSITIONS, Control, Phase, RolloutKind,
                              allowed_controls)
from rollouts.models import Rollout, RolloutEvent
from tests.factories import set_target

TRAFFIC = {"namespace": "ml", "deployment": "resnet-server", "replicas": 4}


def test_every_phase_is_in_the_table_and_moves_only_to_known_phases():
    assert set(TRANSITIONS) == set(Phase)
    for moves in TRANSITIONS.values():
        assert moves <= set(Phase)


def test_terminal_phases_have_no_way_out():
    assert TERMINAL == {Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED}
    assert ACTIVE == set(Phase) - TERMINAL


def test_every_active_phase_can_reach_an_end():
    for phase in ACTIVE:
        seen, frontier = set(), {phase}
        while frontier:
            current = frontier.pop()
            seen.add(current)
            frontier |= TRANSITIONS[current] - seen
        assert seen & TERMINAL, phase


def test_promotion_cannot_be_rolled_back_midway():
    assert Phase.ROLLING_BACK not in TRANSITIONS[Phase.PROMOTING]


@pytest.fixture
def rollout(resnet, make_version):
    make_version(resnet, "deployed", production=True)
    return services.start_rollout(set_target(resnet, TRAFFIC), make_version(resnet), actor="ci", traffic=TRAFFIC)


def test_transition_writes_phase_and_an_event(rollout):
    services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller", reason="canary started")
    assert Rollout.objects.get(pk=rollout.pk).phase == Phase.PROGRESSING
    event = RolloutEvent.objects.filter(rollout=rollout).last()
    assert (event.old, event.new, event.actor, event.reason) == ("pending", "progressing", "controller",
                                                                  "canary started")


def test_illegal_transition_raises_and_changes_nothing(rollout):
    with pytest.raises(IllegalTransition) as raised:
        services.transition_rollout(rollout, Phase.SUCCEEDED, actor="controller")
    assert raised.value.code == "illegal_transition"
    assert Rollout.objects.get(pk=rollout.pk).phase == Phase.PENDING
    assert RolloutEvent.objects.filter(rollout=rollout).count() == 1


def test_stale_copy_loses_the_compare_and_set(rollout):
    stale = Rollout.objects.get(pk=rollout.pk)
    services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller")
    with pytest.raises(IllegalTransition) as raised:
        services.transition_rollout(stale, Phase.PAUSED, actor="oncall")
    assert raised.value.code == "concurrent_change"
    assert Rollout.objects.get(pk=rollout.pk).phase == Phase.PROGRESSING


def test_step_advance_is_compare_and_set_on_the_step(rollout):
    services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller")
    stale = Rollout.objects.get(pk=rollout.pk)
    services.advance_step(rollout, 1, actor="controller")
    with pytest.raises(IllegalTransition):
        services.advance_step(stale, 1, actor="controller")
    assert RolloutEvent.objects.filter(rollout=rollout, step=1).count() == 1


# ------------------------------------------------------------------ controls

def test_every_control_a_phase_accepts_leads_only_to_moves_in_the_transitions_table():
    assert set(CONTROLS) == set(Phase)
    for phase, controls in CONTROLS.items():
        for control in controls:
            # ROLLING_BACK -> ROLLING_BACK: an abort under way becomes a rollback without changing phase.
            targets = CONTROL_TARGETS[control] - {phase}
            assert targets & TRANSITIONS[phase] or phase in CONTROL_TARGETS[control], (phase, control)


def test_finished_and_promoting_rollouts_accept_no_control():
    for phase in TERMINAL | {Phase.PROMOTING}:
        assert CONTROLS[phase] == frozenset(), phase


def test_a_rollback_rollout_cannot_itself_be_rolled_back():
    assert Control.ROLLBACK in allowed_controls(Phase.PROGRESSING, RolloutKind.CANARY)
    assert Control.ROLLBACK not in allowed_controls(Phase.PROGRESSING, RolloutKind.ROLLBACK)
    assert Control.ABORT in allowed_controls(Phase.PROGRESSING, RolloutKind.ROLLBACK)


def test_a_refused_control_says_which_phases_accept_it_and_changes_nothing(rollout):
    with pytest.raises(IllegalTransition) as raised:
        services.resume(rollout, actor="oncall")
    assert raised.value.detail == f"rollout {rollout.pk} is pending, not paused"
    promoting = services.promote(Rollout.objects.get(pk=rollout.pk), actor="oncall", full=True)
    with pytest.raises(IllegalTransition) as raised:
        services.pause(promoting, actor="oncall")
    assert raised.value.detail == (f"rollout {rollout.pk} is promoting; only a pending or progressing canary "
                                   "rollout can be paused")
    assert Rollout.objects.get(pk=rollout.pk).phase == Phase.PROMOTING


def test_the_api_lists_the_controls_a_rollout_accepts_now(rollout, viewer):
    body = viewer.get(f"/api/v1/rollouts/{rollout.pk}/").json()
    assert body["controls"] == ["abort", "pause", "promote", "rollback"]
    services.pause(rollout, actor="oncall")
    assert viewer.get(f"/api/v1/rollouts/{rollout.pk}/").json()["controls"] == ["abort", "promote", "resume",
                                                                             "rollback"]
