"""Every page fits a phone: nothing scrolls sideways at 390 px, and charts switch to their narrow drawing."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from controlplane.roles import Role
from registry.models import GateResult, RegisteredModel
from rollouts import services
from tests.browser.conftest import DESKTOP, PHONE, horizontal_overflow, overflowing
from tests.factories import set_target
from tests.rollouts.test_controller_scenarios import cluster  # noqa: F401 (fixture)
from tests.rollouts.test_rollout_ui import recorded, story  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def golden_evidence(classes: int = 12) -> dict:
    """A golden-set gate's evidence in the shape workers/gates/golden.py stores, with long class names and a
    regressed class: the widest charts the version page draws."""
    names = [f"class-with-a-long-name-{i}" for i in range(classes)]
    recall = [0.9 - 0.01 * i for i in range(classes)]
    return {
        "class_names": names, "images": 540, "accuracy": 0.88, "expected_calibration_error": 0.04,
        "per_class": [{"index": i, "name": n, "support": 45, "precision": 0.9, "recall": recall[i]}
                      for i, n in enumerate(names)],
        "confusion_matrix": [[40 if i == j else 1 for j in range(classes)] for i in range(classes)],
        "floors": {"min_class_recall": 0.5},
        "production": {"recall": [r + 0.02 for r in recall], "accuracy": 0.9,
                       "regressed_classes": [{"index": 3, "name": names[3]}],
                       "mcnemar": {"p_value": 0.01, "alpha": 0.05, "candidate_only_wrong": 30,
                                   "candidate_only_right": 4}},
    }


@pytest.fixture
def everything(story, make_version):  # noqa: F811
    """A rollout the controller ran and rolled back (story), gate evidence with charts, and a pending rollout."""
    s = story()
    GateResult.objects.create(version=s.v2, gate="golden_set", verdict="fail", summary="class 3 regressed",
                              evidence=golden_evidence())
    resnet = RegisteredModel.objects.create(name="resnet", description="a model with a long description " * 6)
    make_version(resnet, "deployed", production=True)
    pending = services.start_rollout(set_target(resnet), make_version(resnet, "approved"), actor="ci-bot")
    return s, pending


def test_no_page_scrolls_sideways_on_a_phone(browser, live_url, sign_in, page, everything):
    s, pending = everything
    page.set_viewport_size(PHONE)
    page.goto(f"{live_url}/accounts/login/")
    assert horizontal_overflow(page) == 0, "login"
    sign_in(Role.ONCALL, "otto")
    pages = ["/", "/models/story/", f"/models/story/versions/{s.v2.number}/", "/models/story/compare/",
             "/rollouts/", "/rollouts/models/story/", f"/rollouts/{s.rollout.pk}/", f"/rollouts/{pending.pk}/",
             "/rollouts/models/resnet/", "/models/nope/"]
    wide = {}
    for path in pages:
        page.goto(f"{live_url}{path}")
        page.wait_for_load_state("load")
        if horizontal_overflow(page):
            wide[path] = overflowing(page)
    assert wide == {}

    page.goto(f"{live_url}/models/story/versions/{s.v2.number}/")
    expect(page.locator("#gate-golden_set svg").first).to_be_visible()  # drawn, scrolling inside its own box

    # On the rollout page the phone gets the narrow drawings, whose text is never under 11 px on screen.
    page.goto(f"{live_url}/rollouts/{s.rollout.pk}/")
    expect(page.locator(".chart-narrow svg").first).to_be_visible()
    expect(page.locator(".chart-wide svg").first).to_be_hidden()
    smallest = page.evaluate("""() => Math.min(...[...document.querySelectorAll('.chart-narrow svg')].flatMap(svg => {
        const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
        return [...svg.querySelectorAll('text')].map(t => Number(t.getAttribute('font-size')) * scale);
    }))""")
    assert smallest >= 11 * 0.98, smallest
    # Tables are cards: each cell names its column.
    expect(page.locator(".timeline td[data-label=when]").first).to_be_visible()


@pytest.mark.skipif(not os.environ.get("MLCP_UI_SCREENS"), reason="set MLCP_UI_SCREENS to a folder for screenshots")
def test_screenshots_of_the_rollout_page(sign_in, live_url, page, everything):
    s, _ = everything
    out = Path(os.environ["MLCP_UI_SCREENS"])
    out.mkdir(parents=True, exist_ok=True)
    sign_in(Role.ONCALL, "otto")
    for name, size in (("desktop", DESKTOP), ("phone-390", PHONE)):
        page.set_viewport_size(size)
        page.goto(f"{live_url}/rollouts/{s.rollout.pk}/")
        page.screenshot(path=str(out / f"rollout-{name}.png"), full_page=True)
        page.screenshot(path=str(out / f"rollout-{name}-first-screen.png"))
        page.locator(".history").screenshot(path=str(out / f"rollout-{name}-analysis.png"))
