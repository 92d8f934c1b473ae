"""The Django admin shows history and state but cannot write them, and never shows an API key."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from controlplane.accounts import issue_token
from controlplane.models import ApiToken
from controlplane.roles import Role
from registry.models import AliasMove, AuditEvent, GateResult, ModelVersion
from rollouts import services
from rollouts.models import AnalysisRun, Rollout
from tests.factories import set_target

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="not-used-here"))
    return client


@pytest.fixture
def rows(resnet, make_version):
    """One row of each kind the admin must not write."""
    stable = make_version(resnet, "deployed", production=True)
    rollout = services.start_rollout(set_target(resnet), make_version(resnet), actor="ci")
    return {
        AuditEvent: AuditEvent.objects.filter(model_name="resnet").first(),
        AliasMove: AliasMove.objects.first(),
        GateResult: GateResult.objects.create(version=stable, gate="validation", verdict="pass"),
        AnalysisRun: AnalysisRun.objects.create(rollout=rollout, step=0, at=timezone.now(), verdict="pass"),
        ModelVersion: stable,
        Rollout: rollout,
    }


WRITE_PROTECTED = [AuditEvent, AliasMove, GateResult, AnalysisRun, ModelVersion, Rollout]


def _url(model, view: str, pk=None) -> str:
    meta = model._meta
    return f"/admin/{meta.app_label}/{meta.model_name}/" + (f"{pk}/{view}/" if pk else f"{view}/")


@pytest.mark.parametrize("model", WRITE_PROTECTED, ids=lambda m: m.__name__)
def test_the_admin_cannot_add_a_row(superuser, rows, model):
    before = model.objects.count()
    assert superuser.get(_url(model, "add")).status_code == 403
    assert superuser.post(_url(model, "add"), {"actor": "forger", "reason": "forged"}).status_code == 403
    assert model.objects.count() == before


@pytest.mark.parametrize("model", WRITE_PROTECTED, ids=lambda m: m.__name__)
def test_the_admin_shows_a_row_but_cannot_change_it(superuser, rows, model):
    row = rows[model]
    stored = model.objects.filter(pk=row.pk).values().get()
    page = superuser.get(_url(model, "change", row.pk))
    assert page.status_code == 200 and b'value="Save"' not in page.content
    assert superuser.post(_url(model, "change", row.pk), {"actor": "forger"}).status_code == 403
    assert model.objects.filter(pk=row.pk).values().get() == stored


@pytest.mark.parametrize("model", WRITE_PROTECTED, ids=lambda m: m.__name__)
def test_the_admin_cannot_delete_a_row(superuser, rows, model):
    row = rows[model]
    assert superuser.post(_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    changelist = superuser.post(_url(model, "")[:-1], {"action": "delete_selected", "_selected_action": [row.pk]})
    assert changelist.status_code in (200, 302)
    assert model.objects.filter(pk=row.pk).exists()


def test_a_forged_audit_row_cannot_be_added_through_the_admin(superuser, rows):
    response = superuser.post(_url(AuditEvent, "add"), {"actor": "approver", "action": "version.approved",
                                                        "model_name": "resnet", "reason": "looks fine"})
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(reason="looks fine").exists()


def test_the_token_admin_lists_prefixes_and_never_a_key(superuser):
    key = issue_token("release-bot", Role.CI)
    token = ApiToken.objects.get()
    page = superuser.get("/admin/controlplane/apitoken/").content.decode()
    assert token.prefix in page and "release-bot" in page
    assert key.split("_", 2)[2] not in page and token.digest not in page
    detail = superuser.get(f"/admin/controlplane/apitoken/{token.pk}/change/").content.decode()
    assert key.split("_", 2)[2] not in detail and token.digest not in detail
    assert superuser.get("/admin/controlplane/apitoken/add/").status_code == 403


def test_drf_plain_key_admin_is_gone(superuser):
    assert superuser.get("/admin/authtoken/tokenproxy/").status_code == 404


def test_the_token_admin_revokes_selected_tokens(superuser):
    issue_token("release-bot", Role.CI)
    token = ApiToken.objects.get()
    response = superuser.post("/admin/controlplane/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_model_webhook_set_in_the_admin_is_checked_like_the_api(superuser, resnet):
    from registry.admin import RegisteredModelForm

    form = RegisteredModelForm(instance=resnet)
    data = {name: form[name].value() for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items()}
    data["notification_webhook"] = "http://169.254.169.254/latest/meta-data/"
    bound = RegisteredModelForm(data=data, instance=resnet)
    assert not bound.is_valid()
    assert bound.errors["notification_webhook"][0].startswith("webhook 169.254.169.254 refused")
