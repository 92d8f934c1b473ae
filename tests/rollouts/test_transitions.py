"""The rollout lifecycle: one transitions table, compare-and-set moves, an event for each."""

import pytest

from controlplane.errors import IllegalTransition
from rollouts import services
from rollouts.choices import ACTIVE, TERMINAL, TRANSITIONS, Phase
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
