"""API tokens: only a digest is stored, a key is shown once, and expired or revoked keys are refused."""

from datetime import timedelta
from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from controlplane.accounts import issue_token
from controlplane.models import ApiToken
from controlplane.roles import Role
from controlplane.tokens import prefix_of

pytestmark = pytest.mark.django_db


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _status(key: str) -> int:
    return _client(key).get("/api/v1/models/").status_code


def _run(command: str, *args) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue().strip()


def _every_stored_value():
    for model in apps.get_models():
        for row in model.objects.values_list(*[f.attname for f in model._meta.concrete_fields]):
            yield from (str(value) for value in row)


def test_the_database_holds_no_usable_key():
    key = issue_token("release-bot", Role.CI)
    secret = key.split("_", 2)[2]
    assert not [value for value in _every_stored_value() if secret in value]
    assert ApiToken.objects.get().prefix == prefix_of(key)


def test_createtoken_prints_a_working_key():
    key = _run("createtoken", "release-bot", "--role", "ci")
    assert key.startswith("mlcp_") and len(key.splitlines()) == 1
    assert _client(key).post("/api/v1/models/", {"name": "mobilenet"}, format="json").status_code == 201


def test_an_expired_token_is_401():
    key = _run("createtoken", "release-bot", "--role", "viewer", "--expires-in", "1")
    assert _status(key) == 200
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _client(key).get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed" and "expired" in response.json()["detail"]


def test_expires_in_sets_the_expiry():
    _run("createtoken", "release-bot", "--role", "viewer", "--expires-in", "30")
    lifetime = ApiToken.objects.get().expires_at - timezone.now()
    assert timedelta(days=29, hours=23) < lifetime <= timedelta(days=30)


def test_a_revoked_token_is_401():
    key = issue_token("release-bot", Role.VIEWER)
    assert _run("revoketoken", prefix_of(key)) == "revoked 1 token(s)"
    response = _client(key).get("/api/v1/models/")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_revoketoken_takes_a_whole_key_or_every_token_of_a_user():
    first, second = issue_token("bot", Role.VIEWER), issue_token("bot", Role.VIEWER)
    assert _run("revoketoken", first) == "revoked 1 token(s)"
    assert _status(second) == 200
    assert _run("revoketoken", "--user", "bot") == "revoked 1 token(s)"
    assert _status(second) == 401


def test_revoketoken_names_a_prefix_it_does_not_know():
    with pytest.raises(CommandError, match="no token has the prefix 0123456789ab"):
        _run("revoketoken", "0123456789ab")


def test_each_issue_is_a_new_key_and_rotate_revokes_the_earlier_ones():
    first = issue_token("bot", Role.VIEWER)
    second = issue_token("bot", Role.VIEWER)
    assert second != first and _status(first) == 200 and _status(second) == 200
    third = issue_token("bot", Role.VIEWER, rotate=True)
    assert (_status(first), _status(second), _status(third)) == (401, 401, 200)


def test_a_key_with_a_known_prefix_and_a_wrong_secret_is_401():
    key = issue_token("bot", Role.VIEWER)
    forged = f"mlcp_{prefix_of(key)}_" + "A" * 43
    assert _status(forged) == 401


def test_a_drf_authtoken_key_is_no_longer_accepted():
    issue_token("bot", Role.VIEWER)
    legacy = Token.objects.create(user=get_user_model().objects.get(username="bot"))
    assert _status(legacy.key) == 401


def test_a_token_of_an_inactive_user_is_401():
    key = issue_token("bot", Role.VIEWER)
    get_user_model().objects.filter(username="bot").update(is_active=False)
    assert _status(key) == 401
