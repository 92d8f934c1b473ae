"""GET/PUT /api/v1/models/{name}/runbook-policy: what alerts do, changed by approver or admin with a reason."""

import pytest

from oncall.models import RunbookPolicy
from registry.models import AuditEvent

pytestmark = pytest.mark.django_db
URL = "/api/v1/models/resnet/runbook-policy"
POLICY = {"actions": {"MlcpModelErrorBudgetBurn": "rollback", "*": "annotate"}, "dry_run": True,
          "rollback_window_s": 3600}


def test_a_model_nobody_configured_has_the_record_only_policy(viewer, resnet):
    body = viewer.get(URL).json()
    assert body == {"model": "resnet", "configured": False, "actions": {}, "dry_run": False,
                    "rollback_window_s": 86400}


def test_an_approver_sets_it_with_a_reason_and_it_is_audited(approver, viewer, resnet):
    response = approver.put(URL, {**POLICY, "reason": "burn pages roll back"}, format="json")
    assert response.status_code == 200, response.content
    assert viewer.get(URL).json() == {"model": "resnet", "configured": True, **POLICY}
    audit = AuditEvent.objects.get(action="model.runbook_policy")
    assert (audit.actor, audit.reason, audit.detail["policy"]) == ("approver-user", "burn pages roll back", POLICY)
    assert audit.detail["previous"]["actions"] == {}


def test_a_change_without_a_reason_is_refused(approver, resnet):
    response = approver.put(URL, POLICY, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "reason_required")


@pytest.mark.parametrize("who", ["ci", "oncall", "viewer"])
def test_only_approver_or_admin_changes_it(request, who, resnet):
    response = request.getfixturevalue(who).put(URL, {**POLICY, "reason": "mine"}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert not AuditEvent.objects.filter(action="model.runbook_policy").exists()


def test_an_unknown_action_or_alert_name_is_a_400(admin_client, resnet):
    for actions, code in (({"Burn": "delete"}, "invalid_input"), ({"bad name": "pause"}, "invalid_runbook_policy")):
        response = admin_client.put(URL, {"actions": actions, "reason": "x"}, format="json")
        assert (response.status_code, response.json()["code"]) == (400, code)


def test_an_unknown_field_is_refused_and_nothing_is_saved(approver, resnet):
    # Dropped silently, the misspelt "dryRun" would have saved dry_run false: alerts acting for real.
    response = approver.put(URL, {"actions": {"*": "rollback"}, "dryRun": True, "reason": "trial first"},
                            format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_runbook_policy")
    assert response.json()["context"]["unknown"] == ["dryRun"]
    assert not RunbookPolicy.objects.exists() and not AuditEvent.objects.filter(action="model.runbook_policy").exists()


def test_an_alert_name_with_a_trailing_newline_is_refused(approver, resnet):
    response = approver.put(URL, {"actions": {"Burn\n": "rollback"}, "reason": "x"}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_runbook_policy")
    assert not RunbookPolicy.objects.exists()


def test_an_unknown_model_is_a_404(viewer, db):
    assert viewer.get("/api/v1/models/nope/runbook-policy").status_code == 404
