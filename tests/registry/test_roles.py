"""Every endpoint checks its role: the matrix of role x endpoint -> allowed or 403 (401 without a token).

What the roles may do beyond the matrix (governed settings sent with a model, four eyes) is in
test_governance.py.
"""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from controlplane.roles import Role
from registry import services
from registry.choices import VersionStatus
from registry.storage import default_store
from tests.factories import client_for, golden_npz, tiny_onnx, upload

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
    for make_default in (True, False):  # golden set 1 is the default, 2 a candidate
        staged = default_store().stage()
        staged.write(golden_npz())
        services.register_golden_set(resnet, staged, actor="test", make_default=make_default)


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
    ("post", "/api/v1/models/resnet/golden-sets/", "golden_set", [Role.CI, Role.ADMIN]),  # a candidate only
    # The governed settings: what versions must pass, and where they ship.
    ("put", "/api/v1/models/resnet/gate-policy", {"gate_policy": {"gates": ["validation", "golden_set"]},
                                                  "reason": "no int8"}, [Role.APPROVER, Role.ADMIN]),
    ("put", "/api/v1/models/resnet/default-golden-set", {"number": 2, "reason": "more examples"},
     [Role.APPROVER, Role.ADMIN]),
    ("put", "/api/v1/models/resnet/target", {"namespace": "ml", "deployment": "resnet-server", "reason": "moved"},
     [Role.ADMIN]),
    ("get", "/api/v1/signing-keys/", None, ALL_ROLES),
    ("get", "/api/v1/audit/", None, ALL_ROLES),
]


def _call(client, method, path, body):
    if body == "upload":
        return upload(client, "resnet", tiny_onnx(seed=99))
    if body == "golden_set":
        return client.post(path, {"golden_set": SimpleUploadedFile("g.npz", golden_npz())}, format="multipart")
    return getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)


def _state():
    from registry.models import Alias, AuditEvent, GoldenSet, ModelVersion, RegisteredModel

    return (list(ModelVersion.objects.values_list("number", "status")), list(Alias.objects.values_list("name")),
            RegisteredModel.objects.count(), AuditEvent.objects.count(), GoldenSet.objects.count(),
            RegisteredModel.objects.values_list("description", "gate_policy", "default_golden_set",
                                                "rollout_target").get(name="resnet"))


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

    from controlplane.tokens import mint_token

    user = get_user_model().objects.create(username="nobody")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {mint_token(user)}")
    assert client.get("/api/v1/models/").status_code == 403
