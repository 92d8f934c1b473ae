"""A version's status moves only along the transitions table, and every move is audited."""

import pytest

from controlplane.errors import IllegalTransition
from registry import services
from registry.choices import CONTROL_TARGETS, CONTROLS, TRANSITIONS, VersionControl, VersionStatus
from registry.models import AuditEvent, ModelVersion
from tests.factories import tiny_onnx, upload

pytestmark = pytest.mark.django_db
S = VersionStatus


@pytest.fixture
def version(ci, resnet):
    upload(ci, "resnet", tiny_onnx())
    return services.get_version("resnet", 1)


def _walk(version, *statuses):
    for status in statuses:
        services.transition_version(version, status, actor="test")


def test_every_status_has_a_row_in_the_transitions_table():
    assert set(TRANSITIONS) == set(S.values)
    assert TRANSITIONS[S.ARCHIVED] == set()


def test_illegal_transition_is_an_error_and_changes_nothing(version):
    with pytest.raises(IllegalTransition) as caught:
        services.transition_version(version, S.DEPLOYED, actor="test")
    assert "registered to deployed" in caught.value.detail
    assert ModelVersion.objects.get(pk=version.pk).status == S.REGISTERED


def test_a_stale_copy_cannot_overwrite_a_newer_status(version):
    stale = ModelVersion.objects.get(pk=version.pk)
    _walk(version, S.GATING)
    with pytest.raises(IllegalTransition) as caught:
        services.transition_version(stale, S.ARCHIVED, actor="test")
    assert caught.value.code == "concurrent_change"
    assert ModelVersion.objects.get(pk=version.pk).status == S.GATING


def test_approve_through_the_api_records_who_and_why(version, approver):
    _walk(version, S.GATING, S.AWAITING_APPROVAL)
    response = approver.post("/api/v1/models/resnet/versions/1/approve", {"reason": "evidence looks good"},
                             format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    event = AuditEvent.objects.filter(action="version.status").first()
    assert (event.actor, event.from_state, event.to_state, event.reason) == (
        "approver-user", "awaiting_approval", "approved", "evidence looks good")


def test_approving_a_version_still_gating_is_409(version, approver):
    _walk(version, S.GATING)
    response = approver.post("/api/v1/models/resnet/versions/1/approve", {"reason": "hurry"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "illegal_transition"


def test_reject_needs_a_reason(version, approver):
    _walk(version, S.GATING, S.AWAITING_APPROVAL)
    response = approver.post("/api/v1/models/resnet/versions/1/reject", {"reason": "  "}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "reason_required"
    assert ModelVersion.objects.get(pk=version.pk).status == S.AWAITING_APPROVAL


def test_versions_are_immutable_through_the_api(version, admin_client):
    response = admin_client.patch("/api/v1/models/resnet/versions/1/", {"git_commit": "deadbeef"}, format="json")
    assert response.status_code == 405


def test_gates_can_be_requested_again_only_for_a_registered_version(version, ci):
    assert ci.post("/api/v1/models/resnet/versions/1/gates/run").status_code == 202
    assert AuditEvent.objects.filter(action="version.gates_requested").count() == 1
    _walk(version, S.GATING)
    response = ci.post("/api/v1/models/resnet/versions/1/gates/run")
    assert response.status_code == 409
    assert response.json()["code"] == "illegal_transition"


# ------------------------------------------------------------------ controls

def test_every_control_a_status_accepts_is_a_move_in_the_transitions_table():
    assert set(CONTROLS) == set(S.values)
    for status, controls in CONTROLS.items():
        for control in controls:
            assert CONTROL_TARGETS[control] in TRANSITIONS[status], (status, control)


def test_only_a_version_awaiting_approval_can_be_approved_by_hand():
    assert [status for status, controls in CONTROLS.items() if VersionControl.APPROVE in controls] == \
        [S.AWAITING_APPROVAL]


def test_a_refused_control_names_the_statuses_that_accept_it_and_changes_nothing(version):
    with pytest.raises(IllegalTransition) as caught:
        services.approve_version(version, actor="test", reason="looks fine")
    assert caught.value.detail == ("resnet:1 is registered; only a version that is awaiting approval can be "
                                   "approved")
    assert caught.value.context["control"] == "approve"
    assert ModelVersion.objects.get(pk=version.pk).status == S.REGISTERED


def test_the_api_lists_the_controls_a_version_accepts_now(ci, version):
    assert ci.get("/api/v1/models/resnet/versions/1/").json()["controls"] == ["regate"]
    _walk(version, S.GATING, S.AWAITING_APPROVAL)
    assert ci.get("/api/v1/models/resnet/versions/1/").json()["controls"] == ["approve", "reject"]
