"""The rollout services: what starting refuses, and the on-call controls."""

import json

import pytest

from controlplane.errors import Conflict, IllegalTransition, IntegrityFailure, InvalidInput
from registry import services as registry
from registry.choices import VersionStatus
from registry.models import AuditEvent, ModelVersion
from rollouts import services
from rollouts.choices import Phase
from rollouts.models import Rollout
from tests.factories import set_target

pytestmark = pytest.mark.django_db
TRAFFIC = {"namespace": "ml", "deployment": "resnet-server", "replicas": 4}


@pytest.fixture(autouse=True)
def target(resnet):
    """Every model here runs in TRAFFIC; tests/rollouts/test_targets.py is about targets themselves."""
    return set_target(resnet, TRAFFIC)


@pytest.fixture
def production(resnet, make_version):
    return make_version(resnet, "deployed", production=True)


def _start(model, version, **kw):
    return services.start_rollout(model, version, actor="ci-bot", traffic=TRAFFIC, **kw)


def _refusal(model, version, **kw):
    with pytest.raises((Conflict, IntegrityFailure, InvalidInput)) as raised:
        _start(model, version, **kw)
    assert not Rollout.objects.filter(version=version).exists()
    return raised.value.code


def test_start_records_stable_steps_and_makes_the_version_a_canary(resnet, production, make_version):
    candidate = make_version(resnet)
    rollout = _start(resnet, candidate)
    assert (rollout.phase, rollout.stable_version, rollout.current_step) == (Phase.PENDING, production, 0)
    assert [s["weight"] for s in rollout.strategy["steps"]] == [10, 25, 50, 100]
    candidate.refresh_from_db()
    assert candidate.status == VersionStatus.CANARY  # deployed once the rollout promotes
    assert rollout.version_status_before == VersionStatus.APPROVED
    assert rollout.events.get().new == Phase.PENDING
    assert AuditEvent.objects.filter(action="version.status", version_number=candidate.number,
                                     from_state="approved", to_state="canary").exists()


def test_a_canary_version_cannot_be_archived_or_started_again(resnet, production, make_version):
    candidate = make_version(resnet)
    _start(resnet, candidate)
    with pytest.raises(IllegalTransition):
        registry.transition_version(candidate, VersionStatus.ARCHIVED, actor="admin")
    with pytest.raises(Conflict) as raised:
        _start(resnet, candidate)
    assert raised.value.code == "rollout_in_progress"
    assert Rollout.objects.filter(version=candidate).count() == 1


def test_promotion_deploys_the_canary_and_demotes_the_previous_version(resnet, production, make_version):
    candidate = make_version(resnet)
    rollout = _start(resnet, candidate)
    services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller")
    services.promote(rollout, actor="oncall", full=True)
    services.finish_promotion(rollout)
    candidate.refresh_from_db(), production.refresh_from_db()
    assert (candidate.status, production.status) == (VersionStatus.DEPLOYED, VersionStatus.APPROVED)
    assert list(resnet.versions.filter(status=VersionStatus.DEPLOYED)) == [candidate]


def test_first_rollout_has_no_stable_version(resnet, make_version):
    assert _start(resnet, make_version(resnet)).stable_version is None


def test_second_active_rollout_of_a_model_is_refused(resnet, production, make_version):
    first = _start(resnet, make_version(resnet))
    assert _refusal(resnet, make_version(resnet)) == "rollout_in_progress"
    services.abort(first, actor="oncall", reason="wrong version")
    services.transition_rollout(first, Phase.ABORTED, actor="controller")
    assert _start(resnet, make_version(resnet)).phase == Phase.PENDING


def test_version_awaiting_approval_is_refused_when_approval_is_required(resnet, make_version):
    assert _refusal(resnet, make_version(resnet, "awaiting_approval")) == "version_not_approved"


def test_version_awaiting_approval_ships_when_approval_is_not_required_and_awaits_it_again_after(resnet,
                                                                                                 make_version):
    version = make_version(resnet, "awaiting_approval")
    rollout = _start(resnet, version, approval_required=False)
    version.refresh_from_db()
    assert version.status == VersionStatus.CANARY
    assert "does not require approval" in version.status_reason
    # Nobody approved it: a rollout that ends without promoting it leaves it awaiting approval, not approved.
    services.abort(rollout, actor="oncall", reason="wrong version")
    services.finish_retreat(rollout)
    version.refresh_from_db()
    assert version.status == VersionStatus.AWAITING_APPROVAL


def test_rejected_version_is_refused(resnet, make_version):
    assert _refusal(resnet, make_version(resnet, "rejected"), approval_required=False) == "version_rejected"


def test_unverifiable_signature_is_refused(resnet, make_version):
    version = make_version(resnet)
    other = make_version(resnet)
    # A genuine bundle, but for other bytes.
    ModelVersion.objects.filter(pk=version.pk).update(signature_bundle=other.signature_bundle)
    version.refresh_from_db()
    assert _refusal(resnet, version) == "signature_invalid"


def test_unsigned_version_is_refused(resnet, make_version):
    version = make_version(resnet)
    ModelVersion.objects.filter(pk=version.pk).update(signature_bundle="")
    version.refresh_from_db()
    assert _refusal(resnet, version) == "version_unsigned"


def test_production_version_is_refused(resnet, production):
    assert _refusal(resnet, production) == "already_in_production"


def test_malformed_steps_and_traffic_are_refused(resnet, make_version):
    version = make_version(resnet)
    assert _refusal(resnet, version, steps=[50, 25, 100]) == "invalid_strategy"
    assert _refusal(resnet, version, steps=[0, 100]) == "invalid_strategy"
    with pytest.raises(InvalidInput) as raised:
        services.start_rollout(resnet, version, actor="ci", traffic={"namespace": "ml", "weight": 5})
    assert raised.value.code == "invalid_traffic"
    with pytest.raises(InvalidInput) as raised:
        services.set_rollout_target(resnet, {"namespace": "ml"}, actor="admin", reason="no deployment")
    assert raised.value.code == "invalid_traffic"


def test_rollback_goes_where_production_runs_even_after_the_target_moved(resnet, make_version):
    first = make_version(resnet)
    for version in (first, make_version(resnet)):
        services.finish_promotion(services.promote(_start(resnet, version), actor="oncall", full=True))
    set_target(resnet, {"namespace": "vision", "deployment": "resnet-v2"})
    rollback = services.rollback(resnet, reason="bad", actor="oncall")
    assert (rollback.version, rollback.traffic["namespace"], rollback.traffic["deployment"]) == (
        first, "ml", "resnet-server")


def test_pause_and_resume_restart_the_steps_clock(resnet, production, make_version):
    rollout = _start(resnet, make_version(resnet))
    services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller")
    services.pause(rollout, actor="oncall", reason="looking at dashboards")
    assert rollout.phase == Phase.PAUSED
    with pytest.raises(IllegalTransition):
        services.pause(rollout, actor="oncall")
    services.resume(rollout, actor="oncall")
    assert rollout.phase == Phase.PROGRESSING and rollout.step_started_at and rollout.deadline_at


def test_promote_goes_one_step_or_all_the_way(resnet, production, make_version):
    rollout = _start(resnet, make_version(resnet))
    services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller")
    services.promote(rollout, actor="oncall")
    assert (rollout.phase, rollout.current_step) == (Phase.PROGRESSING, 1)
    services.promote(rollout, actor="oncall", full=True)
    assert (rollout.phase, rollout.current_step) == (Phase.PROMOTING, 3)
    with pytest.raises(IllegalTransition):
        services.promote(rollout, actor="oncall")


def test_abort_needs_a_reason_and_retreats_without_marking_the_version(resnet, production, make_version):
    rollout = _start(resnet, make_version(resnet))
    with pytest.raises(InvalidInput):
        services.abort(rollout, actor="oncall", reason=" ")
    services.abort(rollout, actor="oncall", reason="wrong model")
    assert (rollout.phase, rollout.retreat_phase) == (Phase.ROLLING_BACK, Phase.ABORTED)
    assert rollout.version.status == VersionStatus.CANARY  # until all traffic is back on stable
    services.finish_retreat(rollout)
    rollout.version.refresh_from_db()
    assert (rollout.phase, rollout.version.status) == (Phase.ABORTED, VersionStatus.APPROVED)


def test_a_failed_rollout_returns_its_version_to_its_prior_status(resnet, production, make_version):
    rollout = _start(resnet, make_version(resnet))
    services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller")
    services.abort(rollout, actor="oncall", reason="stop")
    services.fail(rollout, reason="the canary Deployment cannot be scaled down")
    rollout.version.refresh_from_db()
    assert (rollout.phase, rollout.version.status) == (Phase.FAILED, VersionStatus.APPROVED)


def test_a_canary_rejected_mid_flight_stays_rejected_when_its_rollout_ends(resnet, production, make_version):
    candidate = make_version(resnet)
    rollout = _start(resnet, candidate)
    registry.reject_version(candidate, actor="approver", reason="wrong training data")
    services.abort(rollout, actor="oncall", reason="rejected")
    services.finish_retreat(rollout)
    candidate.refresh_from_db()
    assert candidate.status == VersionStatus.REJECTED


def test_rollback_needs_a_reason(resnet, production):
    with pytest.raises(InvalidInput) as raised:
        services.rollback(resnet, reason="", actor="oncall")
    assert raised.value.code == "reason_required"


def test_rollback_of_the_rollout_in_flight_marks_its_version_rolled_back(resnet, production, make_version):
    rollout = _start(resnet, make_version(resnet))
    services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller")
    returned = services.rollback(resnet, reason="errors in the canary", actor="oncall")
    assert returned.pk == rollout.pk and returned.phase == Phase.ROLLING_BACK
    services.finish_retreat(returned)
    returned.version.refresh_from_db()
    assert returned.version.status == VersionStatus.ROLLED_BACK


def test_rollback_turns_an_abort_in_progress_into_a_rollback(resnet, production, make_version):
    rollout = _start(resnet, make_version(resnet))
    services.abort(rollout, actor="oncall", reason="stop")
    services.rollback(resnet, reason="it was bad after all", actor="oncall")
    assert Rollout.objects.get(pk=rollout.pk).retreat_phase == Phase.ROLLED_BACK


def test_rollback_with_nothing_in_flight_and_no_history_is_refused(resnet, production):
    with pytest.raises(Conflict) as raised:
        services.rollback(resnet, reason="bad", actor="oncall")
    assert raised.value.code == "no_previous_version"


def test_rollback_while_promoting_is_refused_with_a_clear_code(resnet, production, make_version):
    rollout = _start(resnet, make_version(resnet))
    services.promote(rollout, actor="oncall", full=True)
    with pytest.raises(Conflict) as raised:
        services.rollback(resnet, reason="bad", actor="oncall")
    assert raised.value.code == "rollout_promoting"
    assert json.dumps(raised.value.as_dict())
