"""Every endpoint checks its role: the matrix of role x endpoint -> allowed or 403 (401 without a token)."""

import pytest
from rest_framework.test import APIClient

from controlplane.roles import Role
from registry import services
from registry.choices import VersionStatus
from tests.factories import client_for, tiny_onnx, upload

pytestmark = pytest.mark.django_db
ALL_ROLES = list(Role)


def _seed(resnet):
    ci = client_for(Role.CI, "seed-ci")
    upload(ci, "resnet", tiny_onnx(seed=10))
    upload(ci, "resnet", tiny_onnx(seed=11))
    upload(ci, "resnet", tiny_onnx(seed=12))  # stays registered
    for number in (1, 2):
        version = services.get_version("resnet", number)
        services.transition_version(version, VersionStatus.GATING, actor="test")
        services.transition_version(version, VersionStatus.AWAITING_APPROVAL, actor="test")


# (method, path, body, roles allowed); a denied call must be 403 and change nothing.
ENDPOINTS = [
    ("get", "/api/v1/models/", None, ALL_ROLES),
    ("get", "/api/v1/models/resnet/", None, ALL_ROLES),
    ("post", "/api/v1/models/", {"name": "new-model"}, [Role.CI, Role.ADMIN]),
    ("patch", "/api/v1/models/resnet/", {"description": "changed"}, [Role.ADMIN]),
    ("get", "/api/v1/models/resnet/versions/", None, ALL_ROLES),
    ("get", "/api/v1/models/resnet/versions/1/", None, ALL_ROLES),
    ("post", "/api/v1/models/resnet/versions/", "upload", [Role.CI, Role.ADMIN]),
    ("get", "/api/v1/models/resnet/versions/1/artifact", None, ALL_ROLES),
    ("get", "/api/v1/models/resnet/versions/1/signature", None, ALL_ROLES),
    ("get", "/api/v1/models/resnet/versions/1/verify", None, ALL_ROLES),
    ("get", "/api/v1/models/resnet/versions/1/gates", None, ALL_ROLES),
    ("post", "/api/v1/models/resnet/versions/3/gates/run", {}, [Role.CI, Role.ADMIN]),
    ("post", "/api/v1/models/resnet/versions/1/approve", {"reason": "ok"}, [Role.APPROVER, Role.ADMIN]),
    ("post", "/api/v1/models/resnet/versions/2/reject", {"reason": "no"}, [Role.APPROVER, Role.ADMIN]),
    ("put", "/api/v1/models/resnet/aliases/candidate", {"version": 1}, [Role.CI, Role.ADMIN]),
    ("put", "/api/v1/models/resnet/aliases/production", {"version": 1}, [Role.ADMIN]),
    ("get", "/api/v1/models/resnet/aliases", None, ALL_ROLES),
    ("get", "/api/v1/models/resnet/golden-sets/", None, ALL_ROLES),
    ("get", "/api/v1/signing-keys/", None, ALL_ROLES),
    ("get", "/api/v1/audit/", None, ALL_ROLES),
]


def _call(client, method, path, body):
    if body == "upload":
        return upload(client, "resnet", tiny_onnx(seed=99))
    return getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)


def _state():
    from registry.models import Alias, AuditEvent, ModelVersion, RegisteredModel

    return (list(ModelVersion.objects.values_list("number", "status")), list(Alias.objects.values_list("name")),
            RegisteredModel.objects.count(), AuditEvent.objects.count(),
            RegisteredModel.objects.get(name="resnet").description)


@pytest.mark.parametrize("role", ALL_ROLES, ids=[r.value for r in ALL_ROLES])
@pytest.mark.parametrize("method,path,body,allowed", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_role_matrix(resnet, role, method, path, body, allowed):
    _seed(resnet)
    client = client_for(role, f"matrix-{role.value}")
    before = _state()
    response = _call(client, method, path, body)
    if role in allowed:
        assert response.status_code < 400, (response.status_code, getattr(response, "data", None))
    else:
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
        assert _state() == before


@pytest.mark.parametrize("method,path,body,allowed", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_without_a_token_every_endpoint_is_401(resnet, method, path, body, allowed):
    response = _call(APIClient(), method, path, body)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_a_wrong_token_is_401_with_a_clear_code(resnet):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_a_user_without_any_role_cannot_read(resnet):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create(username="nobody")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert client.get("/api/v1/models/").status_code == 403
