"""A rollout page follows the controller without a reload: phase, step, analyses and timeline update live."""

import pytest
from playwright.sync_api import expect

from controlplane.roles import Role
from rollouts.controller import Controller
from rollouts.metrics import PrometheusMetricsProvider
from tests.rollouts.test_controller_scenarios import T0, TICK, Scenario, cluster  # noqa: F401 (fixture)
from tests.rollouts.test_rollout_ui import recorded  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)
LIVE_MS = 15_000  # generous: the page polls every 3 s on a loaded machine


def test_rollout_page_updates_while_the_controller_ticks(sign_in, live_url, make_version, cluster,  # noqa: F811
                                                        kube_emulator, recorded):  # noqa: F811
    s = Scenario("story", make_version, cluster, kube_emulator)
    rollout = s.start(now=T0)
    controller = Controller(cluster, PrometheusMetricsProvider(recorded.url, timeout_s=5), max_workers=0)
    page = sign_in(Role.VIEWER, "vera")
    page.goto(f"{live_url}/rollouts/{rollout.pk}/")
    expect(page.locator("#rollout-state")).to_have_attribute("data-phase", "pending")
    page.evaluate("window.stillTheSamePage = true")

    controller.tick(T0)  # the first step starts: 10% to the canary
    s.settle()
    state = page.locator("#rollout-state")
    expect(state).to_have_attribute("data-phase", "progressing", timeout=LIVE_MS)
    expect(state.locator(".now-step")).to_contain_text("step 1 of 4 · 10%")
    expect(page.locator("#rollout-timeline")).to_contain_text("progressing")

    controller.tick(T0 + TICK)  # the first analysis is recorded
    expect(state.locator(".history")).to_contain_text("1 analysis", timeout=LIVE_MS)
    expect(state.locator(".traffic svg").first).to_be_attached()
    assert page.evaluate("window.stillTheSamePage") is True  # swapped in place, never reloaded
