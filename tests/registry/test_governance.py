"""Governance: what a version must pass is set by approvers above an organisation-wide floor, every change
is audited with its reason, and nobody approves what they uploaded or last decided how to judge."""

import importlib

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile

from controlplane.roles import Role
from registry import services
from registry.choices import VersionStatus
from registry.models import AuditEvent, GoldenSet, ModelVersion, RegisteredModel
from tests.factories import client_for, client_with_roles, golden_npz, tiny_onnx, upload

pytestmark = pytest.mark.django_db
POLICY_URL = "/api/v1/models/resnet/gate-policy"
DEFAULT_GOLDEN_URL = "/api/v1/models/resnet/default-golden-set"


def _refused(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert body["code"] == code, body
    return body


def _governed_state():
    return (list(RegisteredModel.objects.values_list("name", "gate_policy", "default_golden_set", "rollout_target",
                                                     "gate_policy_changed_by", "golden_set_changed_by")),
            GoldenSet.objects.count(), AuditEvent.objects.count())


def _golden(model, *, actor="test", make_default=True):
    from registry.storage import default_store

    staged = default_store().stage()
    staged.write(golden_npz())
    return services.register_golden_set(model, staged, actor=actor, make_default=make_default)


def _post_golden(client, **fields):
    return client.post("/api/v1/models/resnet/golden-sets/",
                       {"golden_set": SimpleUploadedFile("g.npz", golden_npz()), **fields}, format="multipart")


# ------------------------------------------------------------ gate policy

def test_a_model_created_by_ci_runs_the_default_policy(ci):
    response = ci.post("/api/v1/models/", {"name": "fraud"}, format="json")
    assert response.status_code == 201
    assert RegisteredModel.objects.get(name="fraud").gate_policy == {}


@pytest.mark.parametrize("setting,value", [("gate_policy", {"gates": ["validation"]}), ("gate_policy", {"gates": []}),
                                           ("rollout_target", {"namespace": "ml", "deployment": "fraud"}),
                                           ("default_golden_set", 1)])
def test_ci_sending_a_governed_setting_with_a_new_model_is_403_and_registers_nothing(ci, setting, value):
    body = _refused(ci.post("/api/v1/models/", {"name": "fraud", setting: value}, format="json"), 403,
                    "permission_denied")
    assert setting in body["detail"]
    assert not RegisteredModel.objects.exists() and not AuditEvent.objects.exists()


def test_admin_sending_a_gate_policy_with_the_model_is_told_where_it_changes(admin_client, resnet):
    before = _governed_state()
    body = _refused(admin_client.patch("/api/v1/models/resnet/", {"gate_policy": {"gates": ["validation", "golden_set"]},
                                                                  "description": "x"}, format="json"),
                    400, "governed_setting")
    assert "gate-policy" in body["detail"]
    assert _governed_state() == before


@pytest.mark.parametrize("role", [Role.CI, Role.VIEWER, Role.ONCALL])
def test_only_approver_or_admin_changes_a_gate_policy(resnet, role):
    before = _governed_state()
    response = client_for(role).put(POLICY_URL, {"gate_policy": {"golden_set": {"min_accuracy": 0.5}},
                                                 "reason": "looser"}, format="json")
    _refused(response, 403, "permission_denied")
    assert _governed_state() == before


def test_approver_changes_a_gate_policy_and_the_reason_is_audited(approver, resnet):
    policy = {"gates": ["validation", "golden_set"], "golden_set": {"min_accuracy": 0.95}}
    response = approver.put(POLICY_URL, {"gate_policy": policy, "reason": "int8 adds nothing here"}, format="json")
    assert response.status_code == 200, response.json()
    resnet.refresh_from_db()
    assert resnet.gate_policy == policy
    assert resnet.gate_policy_changed_by.username == approver.username
    event = AuditEvent.objects.get(action="model.gate_policy")
    assert (event.actor, event.reason, event.detail["policy"]) == (approver.username, "int8 adds nothing here", policy)


def test_a_gate_policy_change_without_a_reason_is_400_and_changes_nothing(approver, resnet):
    before = _governed_state()
    _refused(approver.put(POLICY_URL, {"gate_policy": {"gates": ["validation", "golden_set"]}, "reason": "  "},
                          format="json"), 400, "reason_required")
    assert _governed_state() == before


@pytest.mark.parametrize("gates,missing", [([], "validation, golden_set"), (["validation"], "golden_set"),
                                           (["validation", "quantization"], "golden_set"),
                                           (["golden_set"], "validation")])
def test_a_policy_below_the_floor_is_400_naming_the_missing_gates(admin_client, resnet, gates, missing):
    before = _governed_state()
    body = _refused(admin_client.put(POLICY_URL, {"gate_policy": {"gates": gates}, "reason": "faster"},
                                     format="json"), 400, "policy_below_floor")
    assert f"leave out {missing}" in body["detail"]
    assert _governed_state() == before


def test_quantization_is_optional_above_the_floor(approver, resnet):
    response = approver.put(POLICY_URL, {"gate_policy": {"gates": ["validation", "golden_set"]}, "reason": "r"},
                            format="json")
    assert response.status_code == 200


def test_the_floor_is_the_organisations_setting(approver, resnet, settings):
    settings.MLCP_MINIMUM_GATES = ["validation"]
    response = approver.put(POLICY_URL, {"gate_policy": {"gates": ["validation"]}, "reason": "r"}, format="json")
    assert response.status_code == 200


@pytest.mark.parametrize("policy", ["strict", {"golden_set": {"min_accuracy": 2}}, {"no_such_gate": {}},
                                    {"golden_set": {"min_accuracy": "high"}}, {"gates": ["validation", "validation"]},
                                    # An integer past a float's range: float() raised OverflowError, a 500.
                                    {"validation": {"latency_budget_p95_ms": 10**400}}])
def test_a_malformed_policy_is_400_naming_the_field(approver, resnet, policy):
    before = _governed_state()
    body = _refused(approver.put(POLICY_URL, {"gate_policy": policy, "reason": "r"}, format="json"), 400,
                    "invalid_input")
    assert "gate_policy" in body["fields"]
    assert _governed_state() == before


@pytest.mark.parametrize("body", ['{"validation": {"latency_budget_p95_ms": NaN}}', "[" * 100_000,
                                  '{"golden_set": {"class_recall_drop_overrides": {"\\ud800": 0.1}}}'])
def test_a_policy_sent_as_a_form_field_is_decoded_with_the_same_refusals(approver, resnet, body):
    # Form and multipart bodies hand a JSON field its text, which DRF decodes itself.
    before = _governed_state()
    _refused(approver.put(POLICY_URL, {"gate_policy": body, "reason": "r"}, format="multipart"), 400, "invalid_input")
    assert _governed_state() == before


def test_the_migration_raises_policies_below_the_floor(resnet):
    migration = importlib.import_module("registry.migrations.0003_governance")
    RegisteredModel.objects.filter(pk=resnet.pk).update(gate_policy={"gates": [], "validation": {"batch_sizes": [1]}})
    migration.raise_policies_to_the_floor(apps, None)
    resnet.refresh_from_db()
    assert resnet.gate_policy == {"gates": ["validation", "golden_set"], "validation": {"batch_sizes": [1]}}
    assert AuditEvent.objects.get(action="model.gate_policy").actor == "system"


# ------------------------------------------------------------ golden sets

def test_ci_uploads_a_golden_set_only_as_a_candidate(ci, resnet):
    current = _golden(resnet)
    response = _post_golden(ci)
    assert response.status_code == 201, response.json()
    resnet.refresh_from_db()
    assert resnet.default_golden_set == current and resnet.golden_set_changed_by is None


def test_ci_making_its_upload_the_default_is_403_and_stores_nothing(ci, resnet, stored_files):
    _refused(_post_golden(ci, make_default="true", reason="newer data"), 403, "permission_denied")
    assert not GoldenSet.objects.exists() and stored_files() == []
    resnet.refresh_from_db()
    assert resnet.default_golden_set is None


def test_making_an_upload_the_default_needs_a_reason(admin_client, resnet, stored_files):
    _refused(_post_golden(admin_client, make_default="true"), 400, "reason_required")
    assert not GoldenSet.objects.exists() and stored_files() == []


def test_admin_upload_made_the_default_is_audited_with_its_reason(admin_client, resnet):
    assert _post_golden(admin_client, make_default="true", reason="relabelled class 3").status_code == 201
    resnet.refresh_from_db()
    assert resnet.default_golden_set.number == 1 and resnet.golden_set_changed_by.username == admin_client.username
    assert AuditEvent.objects.get(action="golden_set.registered").reason == "relabelled class 3"


@pytest.mark.parametrize("role", [Role.CI, Role.VIEWER, Role.ONCALL])
def test_only_approver_or_admin_switches_the_default_golden_set(resnet, role):
    _golden(resnet)
    _golden(resnet, make_default=False)
    before = _governed_state()
    _refused(client_for(role).put(DEFAULT_GOLDEN_URL, {"number": 2, "reason": "mine"}, format="json"), 403,
             "permission_denied")
    assert _governed_state() == before


def test_approver_switches_the_default_golden_set_with_a_reason(approver, resnet):
    _golden(resnet)
    _golden(resnet, make_default=False)
    response = approver.put(DEFAULT_GOLDEN_URL, {"number": 2, "reason": "more examples of class 3"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["default_golden_set"] == 2
    resnet.refresh_from_db()
    assert resnet.golden_set_changed_by.username == approver.username
    event = AuditEvent.objects.get(action="model.default_golden_set")
    assert (event.from_state, event.to_state, event.reason) == ("1", "2", "more examples of class 3")


def test_switching_the_default_golden_set_without_a_reason_is_400(approver, resnet):
    _golden(resnet)
    _golden(resnet, make_default=False)
    before = _governed_state()
    _refused(approver.put(DEFAULT_GOLDEN_URL, {"number": 2}, format="json"), 400, "reason_required")
    assert _governed_state() == before


# ----------------------------------------------------------- four eyes

def _awaiting(client):
    assert upload(client, "resnet", tiny_onnx(seed=7)).status_code == 201
    version = ModelVersion.objects.get(model__name="resnet", number=1)
    for status in (VersionStatus.GATING, VersionStatus.AWAITING_APPROVAL):
        services.transition_version(version, status, actor="gate-pipeline")
    return version


def _approve(client, version, reason="gates passed"):
    return client.post(f"/api/v1/models/resnet/versions/{version.number}/approve", {"reason": reason}, format="json")


def _still_awaiting(version):
    version.refresh_from_db()
    assert version.status == VersionStatus.AWAITING_APPROVAL
    assert not AuditEvent.objects.filter(action="version.status", to_state=VersionStatus.APPROVED).exists()


def test_the_uploader_cannot_approve_their_own_version(resnet):
    insider = client_with_roles("insider", Role.CI, Role.APPROVER)
    version = _awaiting(insider)
    body = _refused(_approve(insider, version), 403, "self_approval")
    assert "insider may not approve resnet:1: they uploaded it" in body["detail"]
    _still_awaiting(version)


def test_an_admin_who_uploaded_cannot_approve_either(admin_client, resnet):
    version = _awaiting(admin_client)
    _refused(_approve(admin_client, version), 403, "self_approval")
    _still_awaiting(version)


def test_another_approver_approves_the_uploaded_version(resnet, approver):
    version = _awaiting(client_with_roles("insider", Role.CI, Role.APPROVER))
    assert _approve(approver, version).status_code == 200
    version.refresh_from_db()
    assert version.status == VersionStatus.APPROVED


def test_whoever_last_changed_the_gate_policy_cannot_approve(ci, approver, resnet):
    version = _awaiting(ci)
    assert approver.put(POLICY_URL, {"gate_policy": {"gates": ["validation", "golden_set"]}, "reason": "no int8"},
                        format="json").status_code == 200
    body = _refused(_approve(approver, version), 403, "self_approval")
    assert "last changed the gate policy of 'resnet'" in body["detail"]
    _still_awaiting(version)


def test_whoever_last_set_the_default_golden_set_cannot_approve(ci, approver, resnet):
    _golden(resnet)
    _golden(resnet, make_default=False)
    version = _awaiting(ci)
    assert approver.put(DEFAULT_GOLDEN_URL, {"number": 2, "reason": "easier set"}, format="json").status_code == 200
    body = _refused(_approve(approver, version), 403, "self_approval")
    assert "last set the default golden set of 'resnet'" in body["detail"]
    _still_awaiting(version)


def test_a_derived_version_counts_as_its_parents_uploaders(resnet):
    insider = client_with_roles("insider", Role.CI, Role.APPROVER)
    parent = _awaiting(insider)
    derived = services.ingest_bytes(resnet, tiny_onnx(seed=8), "int8.onnx",
                                    services.VersionMetadata(parent_number=parent.number, derivation="int8-static-qdq"),
                                    actor="gate-pipeline")
    for status in (VersionStatus.GATING, VersionStatus.AWAITING_APPROVAL):
        services.transition_version(derived, status, actor="gate-pipeline")
    _refused(_approve(insider, derived), 403, "self_approval")


def test_two_person_approval_can_be_turned_off(resnet, settings):
    settings.MLCP_TWO_PERSON_APPROVAL = False
    insider = client_with_roles("insider", Role.CI, Role.APPROVER)
    version = _awaiting(insider)
    assert _approve(insider, version).status_code == 200


def test_the_web_ui_says_why_an_uploader_cannot_approve(client, resnet):
    from django.contrib.auth import get_user_model

    version = _awaiting(client_with_roles("insider", Role.CI, Role.APPROVER))
    client.force_login(get_user_model().objects.get(username="insider"))
    response = client.post("/models/resnet/versions/1/approve", {"reason": "mine"}, follow=True)
    assert b"Not approved: insider may not approve resnet:1: they uploaded it" in response.content
    _still_awaiting(version)


def test_a_model_sent_back_as_shown_may_repeat_its_governed_settings(admin_client, resnet):
    shown = admin_client.get("/api/v1/models/resnet/").json()
    writable = {k: v for k, v in shown.items() if k not in ("created_at", "created_by", "aliases")}
    response = admin_client.put("/api/v1/models/resnet/", {**writable, "description": "changed"}, format="json")
    assert response.status_code == 200, response.json()
    resnet.refresh_from_db()
    assert resnet.description == "changed" and resnet.gate_policy == {}
