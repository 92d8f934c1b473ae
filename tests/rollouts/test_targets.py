"""A rollout goes only where its model runs: the model's target, set by an admin; a request may repeat it,
never name another Deployment."""

import pytest

from controlplane.errors import Conflict, Forbidden
from controlplane.roles import Role
from registry.choices import VersionStatus
from registry.models import AuditEvent, RegisteredModel
from rollouts import services
from rollouts.choices import Phase
from rollouts.models import Rollout
from tests.factories import TARGET, client_for, set_target

pytestmark = pytest.mark.django_db
TARGET_URL = "/api/v1/models/resnet/target"
START = {"model": "resnet", "version": 2}


@pytest.fixture
def seeded(resnet, make_version):
    make_version(resnet, "deployed", production=True)
    make_version(resnet)  # version 2, approved
    return resnet


def _refused(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert body["code"] == code, body
    return body


def _nothing_started(model):
    assert not Rollout.objects.exists()
    assert model.versions.get(number=2).status == VersionStatus.APPROVED
    assert not AuditEvent.objects.filter(action="rollout.started").exists()


# ------------------------------------------------------------- setting it

def test_admin_sets_the_target_and_the_reason_is_audited(admin_client, resnet):
    response = admin_client.put(TARGET_URL, {"namespace": "vision", "deployment": "resnet-server",
                                             "reason": "moved to the vision namespace"}, format="json")
    assert response.status_code == 200, response.json()
    resnet.refresh_from_db()
    assert resnet.rollout_target == response.json()["rollout_target"]
    assert (resnet.rollout_target["namespace"], resnet.rollout_target["deployment"]) == ("vision", "resnet-server")
    event = AuditEvent.objects.get(action="model.rollout_target")
    assert (event.actor, event.reason) == (admin_client.username, "moved to the vision namespace")


@pytest.mark.parametrize("role", [Role.CI, Role.APPROVER, Role.ONCALL, Role.VIEWER])
def test_only_admin_sets_a_target(resnet, role):
    response = client_for(role).put(TARGET_URL, {"namespace": "ml", "deployment": "fraud-server", "reason": "r"},
                                    format="json")
    _refused(response, 403, "permission_denied")
    resnet.refresh_from_db()
    assert resnet.rollout_target == {} and not AuditEvent.objects.exists()


def test_a_target_change_without_a_reason_is_400_and_changes_nothing(admin_client, resnet):
    _refused(admin_client.put(TARGET_URL, {"namespace": "ml", "deployment": "resnet-server"}, format="json"), 400,
             "reason_required")
    resnet.refresh_from_db()
    assert resnet.rollout_target == {}


@pytest.mark.parametrize("body", [{"deployment": "resnet-server"}, {"namespace": "Not_A_Namespace", "deployment": "d"},
                                  {"namespace": "ml", "deployment": "d", "replicas": 0}])
def test_a_malformed_target_is_400_naming_the_field(admin_client, resnet, body):
    response = admin_client.put(TARGET_URL, {**body, "reason": "r"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"
    resnet.refresh_from_db()
    assert resnet.rollout_target == {}


# ------------------------------------------------------------ starting

def test_a_start_naming_no_target_goes_to_the_models(ci, seeded):
    set_target(seeded, {"namespace": "vision", "deployment": "resnet-server", "replicas": 6})
    response = ci.post("/api/v1/rollouts/", START, format="json")
    assert response.status_code == 201, response.json()
    traffic = Rollout.objects.get().traffic
    assert (traffic["namespace"], traffic["deployment"], traffic["replicas"]) == ("vision", "resnet-server", 6)


def test_a_start_repeating_the_target_is_accepted(ci, seeded):
    set_target(seeded)
    response = ci.post("/api/v1/rollouts/", {**START, **TARGET}, format="json")
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize("foreign", [{"deployment": "fraud-server"}, {"namespace": "payments"}, {"replicas": 40},
                                     {"namespace": "ml", "deployment": "resnet-server", "router": "httproute"},
                                     {"stable_service": "fraud-server"}])
def test_a_start_naming_another_target_is_403_and_starts_nothing(ci, seeded, foreign):
    set_target(seeded)
    body = _refused(ci.post("/api/v1/rollouts/", {**START, **foreign}, format="json"), 403, "foreign_target")
    assert "names another" in body["detail"]
    _nothing_started(seeded)


def test_an_approved_version_of_one_model_cannot_ship_to_another_models_deployment(ci, seeded, make_version):
    """The issue's attack: a `ci` token aiming resnet's approved version at fraud's Deployment."""
    set_target(seeded)
    fraud = set_target(RegisteredModel.objects.create(name="fraud"),
                       {"namespace": "payments", "deployment": "fraud-server"})
    body = _refused(ci.post("/api/v1/rollouts/", {**START, **fraud.rollout_target}, format="json"), 403,
                    "foreign_target")
    assert "resnet" in body["detail"] and "ml/resnet-server" in body["detail"]
    _nothing_started(seeded)


def test_a_model_without_a_target_rolls_out_nowhere(ci, seeded):
    body = _refused(ci.post("/api/v1/rollouts/", {**START, **TARGET}, format="json"), 409, "no_target")
    assert "PUT models/resnet/target" in body["detail"]
    _nothing_started(seeded)


def test_the_service_applies_the_same_rule(seeded):
    version = seeded.versions.get(number=2)
    with pytest.raises(Conflict) as raised:
        services.start_rollout(seeded, version, actor="ci")
    assert raised.value.code == "no_target"
    set_target(seeded)
    with pytest.raises(Forbidden) as raised:
        services.start_rollout(seeded, version, actor="ci", traffic={**TARGET, "deployment": "other"})
    assert (raised.value.code, raised.value.context) == ("foreign_target", {"fields": ["deployment"]})
    _nothing_started(seeded)


def test_a_rollout_keeps_the_target_it_started_with(seeded):
    set_target(seeded)
    rollout = services.start_rollout(seeded, seeded.versions.get(number=2), actor="ci")
    set_target(seeded, {"namespace": "vision", "deployment": "resnet-v2"})
    rollout.refresh_from_db()
    assert rollout.traffic["deployment"] == "resnet-server" and rollout.phase == Phase.PENDING
