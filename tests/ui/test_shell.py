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


def test_a_missing_page_is_the_shells_page_with_a_way_back(viewer_ui):
    response = viewer_ui.get("/models/nope/")
    body = response.content.decode()
    assert response.status_code == 404
    assert 'class="brand"' in body and 'href="/rollouts/"' in body and "Sign out" in body and "Not found" in body
    assert "Resolver404" not in viewer_ui.get("/no/such/page").content.decode()


def test_the_header_says_whether_a_controller_is_ticking(viewer_ui):
    from django.utils import timezone

    from rollouts.models import ControllerLease

    assert "no controller has ever ticked" in viewer_ui.get("/").content.decode()
    ControllerLease.objects.create(holder="pod-a", expires_at=timezone.now(), tick_started_at=timezone.now())
    assert "● controller ticking" in viewer_ui.get("/").content.decode()


def test_times_are_written_in_utc_for_the_browser_to_show_in_local_time():
    from datetime import datetime, timedelta, timezone

    from ui.templatetags.ui import when

    at = datetime(2024, 5, 1, 14, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert str(when(at)) == ('<time datetime="2024-05-01T12:30:05Z" data-local="datetime" '
                             'title="2024-05-01 12:30:05 UTC">2024-05-01 12:30:05 UTC</time>')
    assert ">12:30:05 UTC<" in str(when(at, "time")) and when(None) == "—"


def test_the_admin_says_aliases_and_wraps_the_signature_field(db):
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root"))
    index = admin.get("/admin/").content.decode()
    assert "Aliases" in index and "Aliass" not in index
    assert "ui/admin.css" in admin.get("/admin/registry/modelversion/").content.decode()
