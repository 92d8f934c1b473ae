"""The rollout endpoints: which role may call each, and errors as {code, detail}."""

import pytest
from rest_framework.test import APIClient

from controlplane.roles import Role
from rollouts import services
from rollouts.choices import Phase
from rollouts.models import Rollout
from tests.factories import client_for, set_target

pytestmark = pytest.mark.django_db
TRAFFIC = {"namespace": "ml", "deployment": "resnet-server", "replicas": 4}
START = {"model": "resnet", "version": 2, "namespace": "ml", "deployment": "resnet-server", "replicas": 4,
         "steps": [10, 50, 100], "pause_s": 120}


@pytest.fixture
def seeded(resnet, make_version):
    make_version(resnet, "deployed", production=True)
    make_version(resnet)  # version 2, approved
    return set_target(resnet, TRAFFIC)


def _progressing(model):
    rollout = services.start_rollout(model, model.versions.get(number=2), actor="ci", traffic=TRAFFIC)
    return services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller",
                                       **services.step_start_fields(rollout, 0, rollout.created_at))


# (method, path template, body, roles allowed)
CONTROLS = [
    ("post", "/api/v1/rollouts/{id}/pause", {"reason": "look"}, {Role.ONCALL, Role.ADMIN}),
    ("post", "/api/v1/rollouts/{id}/abort", {"reason": "stop"}, {Role.ONCALL, Role.ADMIN}),
    ("post", "/api/v1/rollouts/{id}/promote", {"full": False}, {Role.ONCALL, Role.ADMIN}),
    ("post", "/api/v1/models/resnet/rollback", {"reason": "bad"}, {Role.ONCALL, Role.ADMIN}),
    ("get", "/api/v1/rollouts/{id}/", None, set(Role)),
    ("get", "/api/v1/rollouts/", None, set(Role)),
]


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("method,path,body,allowed", CONTROLS)
def test_each_control_needs_its_role(seeded, role, method, path, body, allowed):
    rollout = _progressing(seeded)
    client = client_for(role)
    response = getattr(client, method)(path.format(id=rollout.pk), body, format="json")
    before = Rollout.objects.get(pk=rollout.pk).phase
    if role in allowed:
        assert response.status_code in (200, 202), response.json()
    else:
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
        assert before == Phase.PROGRESSING


@pytest.mark.parametrize("role", list(Role))
def test_only_ci_and_admin_start_rollouts(seeded, role):
    response = client_for(role).post("/api/v1/rollouts/", START, format="json")
    assert response.status_code == (201 if role in (Role.CI, Role.ADMIN) else 403)


def test_start_returns_the_rollout(seeded, ci):
    response = ci.post("/api/v1/rollouts/", START, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["model"], body["version"], body["stable_version"], body["phase"]) == ("resnet", 2, 1, "pending")
    assert [s["pause_s"] for s in body["strategy"]["steps"]] == [120, 120, 0]


def test_no_token_is_401(seeded):
    assert APIClient().get("/api/v1/rollouts/").status_code == 401


def test_ci_cannot_skip_approval(seeded, ci):
    response = ci.post("/api/v1/rollouts/", {**START, "approval_required": False}, format="json")
    assert response.status_code == 403
    assert not Rollout.objects.exists()


def test_second_rollout_is_409_with_a_code(seeded, ci):
    assert ci.post("/api/v1/rollouts/", START, format="json").status_code == 201
    response = ci.post("/api/v1/rollouts/", START, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "rollout_in_progress"


def test_unknown_version_and_rollout_are_404(seeded, ci, viewer):
    assert ci.post("/api/v1/rollouts/", {**START, "version": 9}, format="json").json()["code"] == "not_found"
    assert viewer.get("/api/v1/rollouts/999/").status_code == 404


def test_bad_input_is_400_never_500(seeded, ci, oncall):
    response = ci.post("/api/v1/rollouts/", {**START, "steps": "ten"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_strategy"
    response = oncall.post("/api/v1/models/resnet/rollback", {}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "reason_required"


def test_illegal_control_is_409(seeded, oncall):
    rollout = _progressing(seeded)
    assert oncall.post(f"/api/v1/rollouts/{rollout.pk}/resume", {}, format="json").json()["code"] == \
        "illegal_transition"


def test_detail_shows_the_timeline(seeded, viewer):
    rollout = _progressing(seeded)
    events = viewer.get(f"/api/v1/rollouts/{rollout.pk}/").json()["events"]
    assert [(e["old"], e["new"]) for e in events] == [("", "pending"), ("pending", "progressing")]
