"""The UI shell: one sign-in, one base template and stylesheet, and chart primitives every app's pages share."""

import ast
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from controlplane.accounts import issue_token
from controlplane.roles import Role
from ui import svg

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer_ui(db):
    issue_token("viewer-ui", Role.VIEWER)
    client = Client()
    client.force_login(get_user_model().objects.get(username="viewer-ui"))
    return client


def test_an_anonymous_visitor_is_sent_to_the_shells_sign_in_page(client):
    response = client.get("/rollouts/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/rollouts/")
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'href="/static/ui/ui.css"' in page.content


def test_registry_and_rollout_pages_render_in_the_same_shell(viewer_ui):
    for url in ("/", "/rollouts/"):
        body = viewer_ui.get(url).content.decode()
        assert 'href="/static/ui/ui.css"' in body and 'class="brand"' in body and "Sign out" in body, url


def test_signing_out_returns_to_the_sign_in_page(viewer_ui):
    response = viewer_ui.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"


def test_no_apps_ui_reaches_into_another_apps_ui():
    for app, other in (("registry", "rollouts"), ("rollouts", "registry")):
        for path in (ROOT / app / "ui").rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    assert not node.module.startswith(f"{other}.ui"), f"{path.relative_to(ROOT)} imports {node.module}"


def test_text_in_a_chart_is_escaped():
    drawn = svg.document(100, 20, "a <title>", [svg.text(0, 10, "<script>alert(1)</script>")])
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn and "a &lt;title&gt;" in drawn


def test_durations_read_at_a_sensible_precision():
    assert [svg.ms(v) for v in (0.0123, 1.25, 12.0, 250.4)] == ["0.012", "1.2", "12", "250"]
    assert [svg.nice_ceiling(v) for v in (0, 3, 7, 180)] == [1.0, 5, 10, 200]
