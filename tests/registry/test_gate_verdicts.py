"""A gate result's verdict moves only along its transitions table, by compare-and-set."""

import pytest

from controlplane.errors import IllegalTransition
from registry import services
from registry.gate_verdicts import DECIDED, GATE_TRANSITIONS, OUTCOMES, GateVerdict
from registry.models import GateResult
from tests.factories import tiny_onnx, upload

pytestmark = pytest.mark.django_db
V = GateVerdict


@pytest.fixture
def result(ci, resnet):
    upload(ci, "resnet", tiny_onnx())
    version = services.get_version("resnet", 1)
    return GateResult.objects.create(version=version, gate="validation")


def test_every_verdict_has_a_row_and_pass_and_fail_are_final():
    assert set(GATE_TRANSITIONS) == set(V)
    assert DECIDED == {V.PASS, V.FAIL}
    assert set(OUTCOMES) == {V.PASS, V.FAIL, V.ERROR}


def test_a_gate_reaches_a_verdict_only_by_running():
    assert GATE_TRANSITIONS[V.PENDING] == {V.RUNNING}
    assert all(outcome in GATE_TRANSITIONS[V.RUNNING] for outcome in OUTCOMES)


def test_an_illegal_move_is_refused_and_changes_nothing(result):
    with pytest.raises(IllegalTransition):
        services.transition_gate(result, V.PASS)
    assert GateResult.objects.get(pk=result.pk).verdict == V.PENDING


def test_of_two_deliveries_claiming_the_same_gate_only_one_runs_it(result):
    first, second = GateResult.objects.get(pk=result.pk), GateResult.objects.get(pk=result.pk)
    assert services.transition_gate(first, V.RUNNING, attempts=1)
    assert not services.transition_gate(second, V.RUNNING, attempts=1)
    assert GateResult.objects.get(pk=result.pk).attempts == 1


def test_a_delivery_taken_over_by_a_redelivery_does_not_record_its_verdict(result):
    services.transition_gate(result, V.RUNNING, attempts=1)
    slow = GateResult.objects.get(pk=result.pk)
    redelivered = GateResult.objects.get(pk=result.pk)
    assert services.transition_gate(redelivered, V.RUNNING, attempts=2)
    assert not services.transition_gate(slow, V.FAIL, summary="late")
    assert services.transition_gate(redelivered, V.PASS, summary="measured")
    stored = GateResult.objects.get(pk=result.pk)
    assert (stored.verdict, stored.summary, stored.attempts) == (V.PASS, "measured", 2)
