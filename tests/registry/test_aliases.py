"""Aliases point at versions, move atomically, and keep their history."""

import pytest

from registry import services
from registry.models import AliasMove
from tests.factories import tiny_onnx, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(ci, resnet):
    upload(ci, "resnet", tiny_onnx(seed=1))
    upload(ci, "resnet", tiny_onnx(seed=2))


def test_moving_an_alias_keeps_history_with_actor_and_reason(two_versions, ci):
    ci.put("/api/v1/models/resnet/aliases/candidate", {"version": 1, "reason": "first"}, format="json")
    response = ci.put("/api/v1/models/resnet/aliases/candidate", {"version": 2, "reason": "newer"}, format="json")
    assert response.status_code == 200
    assert response.json()["version"] == 2
    history = ci.get("/api/v1/models/resnet/alias-history").json()
    assert [(h["from_version"], h["to_version"], h["reason"], h["actor"]) for h in history] == [
        (1, 2, "newer", "ci-user"), (None, 1, "first", "ci-user")]


def test_moving_an_alias_to_where_it_points_records_nothing(two_versions, resnet):
    version = services.get_version("resnet", 1)
    services.move_alias(resnet, "candidate", version, actor="test")
    services.move_alias(resnet, "candidate", version, actor="test")
    assert AliasMove.objects.count() == 1


def test_alias_to_a_missing_version_is_404_and_changes_nothing(two_versions, ci):
    response = ci.put("/api/v1/models/resnet/aliases/candidate", {"version": 9}, format="json")
    assert response.status_code == 404
    assert ci.get("/api/v1/models/resnet/aliases").json() == []


def test_model_detail_shows_where_aliases_point(two_versions, ci, admin_client):
    admin_client.put("/api/v1/models/resnet/aliases/production", {"version": 2, "reason": "manual"}, format="json")
    assert ci.get("/api/v1/models/resnet/").json()["aliases"] == {"production": 2}
