"""Each role signs in through the form and does its job in a real browser: approve with a reason, roll back now."""

import pytest
from playwright.sync_api import expect

from controlplane.roles import Role
from registry.choices import VersionStatus
from registry.models import AuditEvent, ModelVersion, RegisteredModel
from rollouts import services
from rollouts.choices import Phase
from rollouts.models import Rollout
from tests.factories import set_target

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def resnet_v2(make_version):
    """resnet: v1 in production, v2 awaiting approval."""
    model = RegisteredModel.objects.create(name="resnet", owner="vision-team")
    make_version(model, "deployed", production=True)
    return make_version(model, "awaiting_approval")


def test_a_viewer_reads_but_is_offered_no_decision(sign_in, live_url, resnet_v2):
    page = sign_in(Role.VIEWER, "vera")
    expect(page.locator(".who")).to_contain_text("viewer")
    page.goto(f"{live_url}/models/resnet/versions/2/")
    expect(page.locator("h1")).to_contain_text("resnet v2")
    expect(page.locator("#decision")).to_have_count(0)
    page.goto(f"{live_url}/rollouts/models/resnet/")
    expect(page.locator("#rollback")).to_have_count(0)


def test_an_approver_approves_with_a_reason(sign_in, live_url, resnet_v2):
    page = sign_in(Role.APPROVER, "ada")
    page.goto(f"{live_url}/models/resnet/versions/2/")
    page.fill("#approve-reason", "recall holds on every class; p95 under budget")
    page.click("button.approve")

    expect(page.locator(".msg.success")).to_contain_text("approved")
    expect(page.locator(".badge.s-approved").first).to_be_visible()
    expect(page.locator("table.grid").last).to_contain_text("recall holds on every class")
    assert ModelVersion.objects.get(pk=resnet_v2.pk).status == VersionStatus.APPROVED
    assert AuditEvent.objects.filter(actor="ada", reason__startswith="recall holds").exists()


def test_oncall_rolls_back_now_after_confirming_the_target(sign_in, live_url, resnet_v2, make_version):
    model = resnet_v2.model
    rollout = services.start_rollout(set_target(model), make_version(model, "approved"), actor="ci-bot")
    page = sign_in(Role.ONCALL, "otto")
    page.goto(f"{live_url}/models/resnet/")
    banner = page.locator(".rollout-banner")
    expect(banner).to_contain_text(f"#{rollout.pk}")  # the model page says a rollout is in flight
    banner.get_by_role("link").click()
    page.goto(f"{live_url}/rollouts/models/resnet/")

    form = page.locator("#rollback")
    expect(form).to_contain_text("back to v1")
    page.fill("#rollback-reason", "p95 doubled after the canary started")
    page.click("#rollback button[type=submit]")
    # Not confirmed: the browser keeps the form (the checkbox is required) and nothing changes.
    assert Rollout.objects.get(pk=rollout.pk).phase == Phase.PENDING
    page.check("#rollback input[name=confirm]")
    page.click("#rollback button[type=submit]")

    expect(page.locator(".msg.success")).to_contain_text("rolling back from v3 to v1")
    expect(page.locator("#rollout-state .badge").first).to_contain_text("rolling back")
    assert Rollout.objects.get(pk=rollout.pk).phase == Phase.ROLLING_BACK
