"""Chaos: real `runcontroller` processes killed at random moments and restarted, two of them racing for the
lease, and the Kubernetes API failing requests at random.

Whatever happens, every rollout ends succeeded; each Deployment is written exactly once per state it goes
through (from the emulator's log of the writes it applied: no write repeats one already made); no write comes
from a controller that did not hold the lease when the emulator applied it (the emulator asks the lease row at
that moment); and every rollout's events form one chain, in order. `make test` runs the short version;
`make chaos` (MLCP_CHAOS=long) the long one, and prints its figures.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from k8s import Cluster
from rollouts import services
from rollouts.choices import Phase
from rollouts.models import ControllerLease, Rollout, RolloutEvent
from tests.factories import set_target
from tests.rollouts.test_controller_scenarios import REPLICAS, Scenario
from tests.support.webserver import ROOT, server_env

SIZES = {
    # rollouts, process kills (SIGKILL mostly, SIGTERM sometimes), share of Kubernetes requests failing
    "short": {"rollouts": 6, "kills": 6, "fault_rate": 0.2, "never_s": 240},
    "long": {"rollouts": 100, "kills": 60, "fault_rate": 0.2, "never_s": 1800},
}
SIZE = os.environ.get("MLCP_CHAOS", "short")
STEPS = [{"weight": 25, "pause_s": 0, "analysis": False}, {"weight": 50, "pause_s": 0, "analysis": False}, 100]
CONTROLLER_ENV = {"MLCP_CONTROLLER_LEASE_S": "3", "MLCP_CONTROLLER_LEASE_POLL_MS": "200"}
UA = "mlcp-controller/"


class Controllers:
    """Two `runcontroller` slots, each restarted as soon as it is killed."""

    def __init__(self, kube_url: str, logs) -> None:
        self.env = server_env(MLCP_K8S_HOST=kube_url, **CONTROLLER_ENV)
        self.logs = logs  # every process's log, appended to one file: read after the run
        self.processes = [self._start(), self._start()]
        self.kills = {"SIGKILL": 0, "SIGTERM": 0}

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "manage.py", "runcontroller", "--interval", "0.3", "--workers", "2"],
                                cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=self.logs.open("ab"))

    def kill_one(self, rng: random.Random) -> None:
        slot = rng.randrange(len(self.processes))
        how = signal.SIGTERM if rng.random() < 0.25 else signal.SIGKILL
        process = self.processes[slot]
        process.send_signal(how)
        process.wait()
        self.kills[how.name] += 1
        self.processes[slot] = self._start()

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def lease_held_by(user_agent: str) -> str | None:
    """Asked by the emulator before it applies each write: did its sender hold the lease just then?"""
    if not user_agent.startswith(UA):
        return None  # the test's own setup
    try:
        lease = ControllerLease.objects.filter(pk=1).values("holder", "expires_at").first()
    finally:
        connection.close()  # a thread of the emulator's: hold no connection past the test
    if lease and lease["holder"] == user_agent[len(UA):] and lease["expires_at"] > timezone.now():
        return "held"
    return f"NOT HELD: lease {lease}"


def settle_until(stop: threading.Event, kube, scenarios) -> None:
    """The Deployment controller's part, for every Deployment, until told to stop."""
    while not stop.wait(0.05):
        for s in scenarios:
            s.settle()


@pytest.mark.django_db(transaction=True)
def test_rollouts_all_succeed_with_controllers_killed_racing_and_kubernetes_failing(make_version, kube_emulator,
                                                                                    tmp_path):
    size = SIZES[SIZE]
    rng = random.Random(int(os.environ.get("MLCP_CHAOS_SEED", "1")))
    cluster = Cluster(kube_emulator.api_client())
    scenarios = [Scenario(f"chaos-{i}", make_version, cluster, kube_emulator) for i in range(size["rollouts"])]
    for s in scenarios:
        set_target(s.model, {"namespace": s.namespace, "deployment": s.deployment, "replicas": REPLICAS})
        # Steps that need no Prometheus: this test is about the controller, not the analysis.
        s.rollout = services.start_rollout(s.model, s.v2, actor="ci-bot", steps=STEPS)
    mark = kube_emulator.mark()
    kube_emulator.watch_writes(lease_held_by)
    kube_emulator.fail_at_random(size["fault_rate"], seed=rng.random())
    stop_settling = threading.Event()
    settler = threading.Thread(target=settle_until, args=(stop_settling, kube_emulator, scenarios), daemon=True)
    settler.start()
    started = time.monotonic()
    controllers = Controllers(kube_emulator.url, tmp_path / "controllers.log")

    def all_ended() -> bool:
        return not Rollout.objects.filter(pk__in=[s.rollout.pk for s in scenarios],
                                          phase__in=services.ACTIVE).exists()
    try:
        kills = 0
        deadline = started + size["never_s"]
        while not all_ended() and time.monotonic() < deadline:
            # The next kill comes at a random moment: mid-tick, mid-write, or while the standby waits.
            if kills < size["kills"] and not stop_settling.wait(rng.uniform(0.3, 2.0)):
                controllers.kill_one(rng)
                kills += 1
            else:
                stop_settling.wait(0.2)
    finally:
        controllers.stop()
        kube_emulator.clear_faults()
        kube_emulator.watch_writes(None)
        stop_settling.set()
        settler.join()
        cluster.close()
    elapsed = time.monotonic() - started

    # SQLite in WAL mode with immediate transactions: many writers queue, none fails on a lock.
    logged = (tmp_path / "controllers.log").read_text(errors="replace")
    assert "database is locked" not in logged and "reconcile failed" not in logged

    phases = {s.rollout.pk: Rollout.objects.get(pk=s.rollout.pk).phase for s in scenarios}
    assert set(phases.values()) == {Phase.SUCCEEDED}, phases

    writes = [w for w in kube_emulator.writes(since=mark) if w.user_agent.startswith(UA)]
    assert [w for w in writes if w.check != "held"] == []
    by_deployment: dict[tuple, list[str]] = {}
    for w in writes:
        by_deployment.setdefault((w.namespace, w.name), []).append(json.dumps(w.spec, sort_keys=True))
    repeated = {key: len(specs) - len(set(specs)) for key, specs in by_deployment.items() if len(specs) != len(set(specs))}
    assert repeated == {}, "a Deployment was written again in a state it already had"
    for s in scenarios:
        stable, canary = s.replicas()
        assert (stable, canary) == (REPLICAS, 0)

    for s in scenarios:
        events = list(RolloutEvent.objects.filter(rollout=s.rollout).order_by("id"))
        assert [e.at for e in events] == sorted(e.at for e in events)
        assert all(later.old == earlier.new for earlier, later in zip(events, events[1:])), \
            [(e.old, e.new) for e in events]
        assert events[-1].new == Phase.SUCCEEDED

    print(f"\nchaos ({SIZE}): {len(scenarios)} rollouts succeeded in {elapsed:.0f} s; "
          f"{controllers.kills['SIGKILL']} SIGKILL, {controllers.kills['SIGTERM']} SIGTERM; "
          f"{size['fault_rate']:.0%} of Kubernetes requests failed; {len(writes)} controller writes, "
          f"none repeated, none without the lease")
