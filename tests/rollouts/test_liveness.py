"""Whether a controller is acting: the rule, the heartbeat the controller writes, and who says so.

An active rollout with no controller acting on it does not move; the API, the
rollout pages and `mlcp rollout status` say so instead of showing it `pending`
as if all were well.
"""

import time
from datetime import datetime, timedelta, timezone
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone as django_timezone

from controlplane.accounts import issue_token
from controlplane.roles import Role
from rollouts import services
from rollouts.choices import Phase
from rollouts.controller import acquire_lease, begin_tick, finish_tick
from rollouts.liveness import TICK_BUCKETS_S, Heartbeat, assess, controller_liveness, observe_tick
from rollouts.liveness import touch_local_heartbeat
from rollouts.models import ControllerLease
from tests.factories import set_target

T = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
STALE_S = 90
WARNING = "this rollout will not move"


# ------------------------------------------------------------------ the rule

def test_without_a_heartbeat_no_controller_is_acting():
    liveness = assess(None, T, STALE_S)
    assert (liveness.alive, liveness.stale_for_s) == (False, None)
    assert liveness.warning == "No controller has ever acted — this rollout will not move"


def test_a_tick_within_the_stale_window_is_alive_and_one_older_is_not():
    heartbeat = Heartbeat("pod-a", tick_started_at=T, tick_finished_at=T + timedelta(seconds=2))
    alive = assess(heartbeat, T + timedelta(seconds=92), STALE_S)
    assert (alive.alive, alive.stale_for_s, alive.warning) == (True, 90.0, "")
    dead = assess(heartbeat, T + timedelta(seconds=300), STALE_S)
    assert (dead.alive, dead.holder, dead.stale_for_s) == (False, "pod-a", 298.0)
    assert dead.warning == "No controller has acted for 298 s — this rollout will not move"


def test_a_long_tick_in_progress_counts_as_acting():
    heartbeat = Heartbeat("pod-a", tick_started_at=T + timedelta(seconds=100), tick_finished_at=T)
    assert assess(heartbeat, T + timedelta(seconds=150), STALE_S).alive


def test_a_controller_clock_ahead_is_not_negative_staleness():
    heartbeat = Heartbeat("pod-a", tick_finished_at=T + timedelta(seconds=5))
    assert assess(heartbeat, T, STALE_S).stale_for_s == 0.0


def test_tick_histogram_counts_each_tick_under_every_bound_it_fits():
    buckets = observe_tick(None, 0.3)
    assert buckets == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    assert observe_tick(buckets, 7.0) == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert observe_tick([5, 5], 0.01) == [1] * len(TICK_BUCKETS_S)  # other bounds: start again


# ------------------------------------------------------------- the heartbeat

@pytest.mark.django_db
def test_only_the_lease_holder_writes_the_heartbeat():
    assert acquire_lease("a", ttl_s=30, now=T)
    assert begin_tick("a", T)
    assert finish_tick("a", finished_at=T + timedelta(seconds=2), duration_s=2.0, reconciled=3)
    assert not begin_tick("b", T + timedelta(seconds=5))
    assert not finish_tick("b", finished_at=T + timedelta(seconds=6), duration_s=1.0, reconciled=1)
    lease = ControllerLease.objects.get()
    assert (lease.holder, lease.tick_started_at, lease.tick_finished_at) == ("a", T, T + timedelta(seconds=2))
    assert (lease.tick_duration_s, lease.rollouts_reconciled, lease.tick_count, lease.tick_seconds_sum) == (
        2.0, 3, 1, 2.0)
    assert lease.tick_buckets == observe_tick(None, 2.0)


@pytest.mark.django_db
def test_runcontroller_once_writes_the_heartbeat(settings, kube_emulator, tmp_path):
    settings.MLCP_K8S_HOST = kube_emulator.url
    settings.MLCP_CONTROLLER_HEARTBEAT_FILE = str(tmp_path / "heartbeat")
    assert not controller_liveness().alive
    call_command("runcontroller", "--once", stdout=StringIO())
    lease = ControllerLease.objects.get()
    assert lease.tick_started_at is not None and lease.tick_finished_at >= lease.tick_started_at
    assert (lease.tick_count, lease.rollouts_reconciled) == (1, 0)
    assert controller_liveness().alive
    call_command("controllerhealth", stdout=StringIO())  # this pod's loop turned just now
    call_command("controllerhealth", "--any", stdout=StringIO())


@pytest.mark.django_db
def test_controllerhealth_fails_on_a_stale_or_missing_heartbeat(settings, tmp_path):
    settings.MLCP_CONTROLLER_HEARTBEAT_FILE = path = str(tmp_path / "heartbeat")
    with pytest.raises(CommandError, match="no heartbeat"):
        call_command("controllerhealth")
    touch_local_heartbeat(path, holder="pod-a", leading=True, at=time.time() - settings.MLCP_CONTROLLER_STALE_S - 5)
    with pytest.raises(CommandError, match="last turned"):
        call_command("controllerhealth")
    with pytest.raises(CommandError, match="No controller has ever acted"):
        call_command("controllerhealth", "--any")


# ------------------------------------------------- who says a controller is missing

@pytest.fixture
def pending(resnet, make_version):
    make_version(resnet, "deployed", production=True)
    set_target(resnet)
    return services.start_rollout(resnet, make_version(resnet), actor="ci")


def _heartbeat(seconds_ago: float) -> None:
    at = django_timezone.now() - timedelta(seconds=seconds_ago)
    assert acquire_lease("pod-a", ttl_s=30, now=at)
    assert finish_tick("pod-a", finished_at=at, duration_s=0.1, reconciled=1)


def test_api_says_no_controller_acts_on_an_active_rollout_without_a_heartbeat(pending, viewer):
    controller = viewer.get(f"/api/v1/rollouts/{pending.pk}/").json()["controller"]
    assert controller == {"alive": False, "holder": "", "last_tick_at": None, "stale_for_s": None}
    listed = viewer.get("/api/v1/rollouts/").json()["results"]
    assert [r["controller"]["alive"] for r in listed] == [False]


def test_api_says_a_controller_acts_with_a_fresh_heartbeat_and_not_with_a_stale_one(pending, viewer):
    _heartbeat(seconds_ago=1)
    controller = viewer.get(f"/api/v1/rollouts/{pending.pk}/").json()["controller"]
    assert (controller["alive"], controller["holder"]) == (True, "pod-a")
    _heartbeat(seconds_ago=3600)
    controller = viewer.get(f"/api/v1/rollouts/{pending.pk}/").json()["controller"]
    assert controller["alive"] is False and controller["stale_for_s"] >= 3600


def test_api_list_reads_the_heartbeat_once_not_once_per_rollout(pending, viewer, resnet, make_version):
    services.abort(pending, actor="oncall", reason="make room")
    services.finish_retreat(pending)
    services.start_rollout(resnet, make_version(resnet), actor="ci")
    with CaptureQueriesContext(connection) as queries:
        assert len(viewer.get("/api/v1/rollouts/").json()["results"]) == 2
    assert sum("controllerlease" in q["sql"] for q in queries.captured_queries) == 1


@pytest.fixture
def browser(db):
    issue_token("viewer-ui", Role.VIEWER)
    client = Client()
    client.force_login(get_user_model().objects.get(username="viewer-ui"))
    return client


@pytest.mark.parametrize("page", ["/rollouts/{pk}/", "/rollouts/", "/rollouts/models/resnet/"])
def test_rollout_pages_warn_in_red_when_no_controller_acts(pending, browser, page):
    _heartbeat(seconds_ago=600)
    html = browser.get(page.format(pk=pending.pk)).content.decode()
    assert 'role="alert"' in html and "No controller has acted for 600 s — this rollout will not move" in html


@pytest.mark.parametrize("page", ["/rollouts/{pk}/", "/rollouts/", "/rollouts/models/resnet/"])
def test_rollout_pages_do_not_warn_while_a_controller_acts(pending, browser, page):
    _heartbeat(seconds_ago=1)
    assert WARNING not in browser.get(page.format(pk=pending.pk)).content.decode()


def test_an_ended_rollout_needs_no_controller_and_gets_no_warning(pending, browser):
    services.abort(pending, actor="oncall", reason="not today")
    services.finish_retreat(pending)
    assert pending.phase == Phase.ABORTED
    assert WARNING not in browser.get(f"/rollouts/{pending.pk}/").content.decode()


def test_cli_status_prints_the_same_warning():
    from rich.console import Console

    from cli.rollout import render

    rollout = {"id": 7, "model": "resnet", "version": 2, "stable_version": 1, "phase": "pending",
               "current_step": 0, "weight": 10, "strategy": {"steps": [10, 100]},
               "controller": {"alive": False, "holder": "pod-a", "last_tick_at": None, "stale_for_s": 412.0}}
    console = Console(record=True, width=200)
    console.print(render(rollout))
    assert "No controller has acted for 412 s — this rollout will not move" in console.export_text()
    console = Console(record=True, width=200)
    console.print(render(rollout | {"controller": {"alive": True, "stale_for_s": 1.0}}))
    assert WARNING not in console.export_text()
