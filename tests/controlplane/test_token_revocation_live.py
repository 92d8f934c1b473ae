"""Revocation on a live server: its workers keep their database connection between requests (CONN_MAX_AGE),
and every request still reads the token's row, so nothing about a token is remembered from one to the next."""

import json
import urllib.error
import urllib.request

import pytest

from controlplane.accounts import issue_token
from controlplane.models import ApiToken
from controlplane.roles import Role
from controlplane.tokens import prefix_of, revoke_tokens
from tests.support.webserver import gunicorn_server

pytestmark = pytest.mark.django_db(transaction=True)


def _get(url: str, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {key}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_token_revoked_while_the_server_runs_is_refused_at_its_next_request():
    key = issue_token("reader", Role.VIEWER)
    with gunicorn_server() as (base_url, _):  # one worker: every request below goes through the same connection
        url = f"{base_url}/api/v1/models/"
        assert _get(url, key)[0] == 200
        assert _get(url, key)[0] == 200
        revoke_tokens(ApiToken.objects.filter(prefix=prefix_of(key)))
        status, body = _get(url, key)
    assert status == 401
    assert body["code"] == "authentication_failed" and "revoked" in body["detail"]
