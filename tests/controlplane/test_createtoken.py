"""`manage.py createtoken USER --role ROLE` gives scripts a working token of that role."""

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _token(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("createtoken", *args, stdout=out)
    return out.getvalue().strip()


def test_createtoken_makes_a_user_whose_token_has_the_role():
    token = _token("release-bot", "--role", "ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.post("/api/v1/models/", {"name": "mobilenet"}, format="json").status_code == 201
    assert client.patch("/api/v1/models/mobilenet/", {"owner": "x"}, format="json").status_code == 403


def test_createtoken_prints_a_new_key_each_time_and_rotate_revokes_the_earlier_ones():
    # Only a hash is stored, so an existing key can never be printed again.
    first = _token("bot", "--role", "viewer")
    second = _token("bot", "--role", "viewer")
    assert second != first
    for key in (first, second):
        assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/models/").status_code == 200
    _token("bot", "--role", "viewer", "--rotate")
    assert APIClient(HTTP_AUTHORIZATION=f"Token {first}").get("/api/v1/models/").status_code == 401


def test_openapi_schema_is_served(db):
    client = APIClient()
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/models/{model_name}/versions/" in response.content


def test_api_docs_page_uses_local_assets_only(db):
    page = APIClient().get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn." not in page and "https://" not in page
