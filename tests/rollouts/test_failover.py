"""The controller under faults, as real `runcontroller` processes against the emulator.

A SIGTERMed leader hands over within seconds; a leader frozen past its lease
(SIGSTOP) that resumes writes nothing; a hung Prometheus (SIGSTOP) does not hold
up an on-call rollback. Each test waits on what it can observe (rows, the
emulator's log of writes, the controllers' heartbeat files), never on a sleep;
the bounds on those waits are "never" bounds, far above what a pass takes.
"""

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.utils import timezone

from devtools.embedded.prometheus import prometheus_server
from k8s import Cluster
from rollouts import services
from rollouts.choices import Phase
from rollouts.models import AnalysisRun, ControllerLease, Rollout, RolloutEvent
from tests.factories import set_target
from tests.rollouts.test_controller_scenarios import REPLICAS, Scenario
from tests.support.webserver import ROOT, server_env

pytestmark = pytest.mark.django_db(transaction=True)
NEVER_S = 90
UA = "mlcp-controller/"
HOLD_STEP = [{"weight": 25, "pause_s": 3600, "analysis": False}, 100]
ANALYSED_STEP = [{"weight": 25, "pause_s": 3600, "analysis": True}, 100]


def wait_for(condition, what: str, never_s: float = NEVER_S):
    """Poll `condition` until it is true; fail if it never is."""
    deadline, tick = time.monotonic() + never_s, threading.Event()
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        tick.wait(0.05)
    pytest.fail(f"never happened within {never_s} s: {what}")


class ControllerProcess:
    """One `runcontroller`, its heartbeat file (who it is, whether it leads) and its output."""

    def __init__(self, tmp_path, name: str, *args: str, **env: str) -> None:
        self.heartbeat = tmp_path / f"{name}.heartbeat"
        self.output = tmp_path / f"{name}.out"
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runcontroller", *args], cwd=ROOT,
            stdout=self.output.open("wb"), stderr=subprocess.STDOUT,
            env=server_env(MLCP_CONTROLLER_HEARTBEAT_FILE=str(self.heartbeat), **env))

    def turned(self) -> dict | None:
        try:
            return json.loads(self.heartbeat.read_text())
        except (OSError, ValueError):
            return None

    @property
    def holder(self) -> str:
        return wait_for(self.turned, "the controller's loop turned")["holder"]

    def leads(self) -> bool:
        lease = ControllerLease.objects.filter(pk=1).values("holder", "expires_at", "tick_finished_at").first()
        return bool(lease and lease["holder"] == self.holder and lease["tick_finished_at"]
                    and lease["expires_at"] > timezone.now())

    def signal(self, signum) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait()


@pytest.fixture
def controllers(tmp_path, kube_emulator):
    started = []

    def start(name, *args, **env):
        process = ControllerProcess(tmp_path, name, *args, MLCP_K8S_HOST=kube_emulator.url, **env)
        started.append(process)
        return process
    yield start
    for process in started:
        process.stop()


@pytest.fixture
def cluster(kube_emulator):
    cluster = Cluster(kube_emulator.api_client())
    yield cluster
    kube_emulator.watch_writes(None)
    cluster.close()


@pytest.fixture
def settled(kube_emulator):
    """Stands in for the Deployment controller: settles every Deployment of the scenarios in the list."""
    scenarios, stop = [], threading.Event()

    def settle():
        while not stop.wait(0.05):
            for s in list(scenarios):
                s.settle()
    thread = threading.Thread(target=settle, daemon=True)
    thread.start()
    yield scenarios
    stop.set()
    thread.join()


def lease_check(user_agent: str) -> str | None:
    """The emulator asks before each write: did its sender hold the lease just then?"""
    if not user_agent.startswith(UA):
        return None
    try:
        lease = ControllerLease.objects.filter(pk=1).values("holder", "expires_at").first()
    finally:
        connection.close()
    return "held" if lease and lease["holder"] == user_agent[len(UA):] and lease["expires_at"] > timezone.now() \
        else f"NOT HELD ({lease})"


def start_rollout(s: Scenario, steps) -> Rollout:
    set_target(s.model, {"namespace": s.namespace, "deployment": s.deployment, "replicas": REPLICAS})
    s.rollout = services.start_rollout(s.model, s.v2, actor="ci-bot", steps=steps)
    return s.rollout


def at_step_zero(*scenarios) -> bool:
    """Every rollout progresses at its first step, its canary created."""
    return all(Rollout.objects.get(pk=s.rollout.pk).phase == Phase.PROGRESSING and s.replicas()[1]
               for s in scenarios)


def rolled_back(s: Scenario) -> RolloutEvent | None:
    return RolloutEvent.objects.filter(rollout=s.rollout, new=Phase.ROLLED_BACK).first()


# ------------------------------------------------------------------ failover

def test_sigterm_to_the_leader_hands_over_and_an_oncall_rollback_asked_then_is_done_within_5_s(
        make_version, kube_emulator, cluster, controllers, settled):
    """Default lease settings: the leader begins no step once SIGTERMed and releases the lease; the standby,
    polling every second, takes it and carries out an on-call rollback asked for at the moment of the SIGTERM.

    Which of the two writes the rollback is not fixed: the signal reaches the leader's handler a moment after
    it is sent, and a step the leader began before that is its to finish. What is fixed: every write comes
    from the holder of the lease at that moment, the rollback is done within 5 s, and the standby leads."""
    s = Scenario("failover", make_version, cluster, kube_emulator)
    settled.append(s)
    start_rollout(s, HOLD_STEP)
    leader = controllers("leader", "--interval", "1")
    wait_for(leader.leads, "the first controller leads")
    wait_for(lambda: at_step_zero(s), "the leader started the rollout")
    standby = controllers("standby", "--interval", "1")
    wait_for(lambda: standby.turned() and not standby.turned()["leading"], "the standby waits")
    mark = kube_emulator.mark()
    kube_emulator.watch_writes(lease_check)

    asked_at = timezone.now()
    leader.signal(signal.SIGTERM)
    services.rollback(s.model, reason="error spike", actor="oncall")
    event = wait_for(lambda: rolled_back(s), "the rollback was carried out")

    assert leader.process.wait(timeout=NEVER_S) == 0
    took_s = (event.at - asked_at).total_seconds()
    assert took_s < 5, f"the rollback was done {took_s:.1f} s after the SIGTERM"
    # Within the same 5 s, whoever wrote: a leader that kept the lease would hold it for its 15 s lifetime.
    wait_for(standby.leads, "the standby leads within 5 s of the SIGTERM",
             never_s=max(0.0, 5 - (timezone.now() - asked_at).total_seconds()))
    writes = [w for w in kube_emulator.writes(since=mark) if w.user_agent.startswith(UA)]
    assert writes and {w.check for w in writes} == {"held"}
    assert {w.user_agent for w in writes} <= {UA + leader.holder, UA + standby.holder}
    by = "the standby" if {w.user_agent for w in writes} == {UA + standby.holder} else "the leader, finishing"
    print(f"\nSIGTERM to rollback by {by}: {took_s:.1f} s")


class HangingPrometheus:
    """An HTTP endpoint that holds every request until released, then answers 503."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.entered.set()
                outer.release.wait()
                self.send_error(503)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()


def test_a_controller_frozen_past_its_lease_writes_nothing_when_it_resumes(make_version, kube_emulator, cluster,
                                                                           controllers, settled):
    """Frozen (SIGSTOP) mid-analysis, its lease taken over; on SIGCONT its analysis returns at once, and every
    step it then tries meets the fence: no cluster write, no row, the lease left to the new leader."""
    prometheus = HangingPrometheus()
    env = {"PROMETHEUS_URL": prometheus.url, "MLCP_CONTROLLER_LEASE_S": "3", "MLCP_CONTROLLER_LEASE_POLL_MS": "200"}
    s = Scenario("frozen", make_version, cluster, kube_emulator)
    settled.append(s)
    start_rollout(s, ANALYSED_STEP)
    try:
        frozen = controllers("frozen", "--interval", "0.5", "--rollout-timeout", "60", **env)
        wait_for(prometheus.entered.is_set, "the leader's analysis waits on Prometheus")
        frozen_holder = frozen.holder
        frozen.signal(signal.SIGSTOP)
        frozen_at = timezone.now()
        successor = controllers("successor", "--interval", "0.5", **env)
        wait_for(successor.leads, "the successor took the lapsed lease")
        mark = kube_emulator.mark()
        kube_emulator.watch_writes(lease_check)
        prometheus.release.set()  # the frozen leader's analysis has its answer waiting when it wakes

        frozen.signal(signal.SIGCONT)
        resumed_at = time.time()
        wait_for(lambda: b"lease lost" in frozen.output.read_bytes(), "the resumed controller met the fence")
        wait_for(lambda: (frozen.turned() or {}).get("at", 0) > resumed_at and not frozen.turned()["leading"],
                 "the resumed controller knows it is a standby")
    finally:
        prometheus.stop()

    assert [w for w in kube_emulator.writes(since=mark) if w.user_agent == UA + frozen_holder] == []
    assert {w.check for w in kube_emulator.writes(since=mark) if w.user_agent.startswith(UA)} <= {"held"}
    lease = ControllerLease.objects.get()
    assert lease.holder == successor.holder and lease.generation >= 2
    assert not AnalysisRun.objects.filter(recorded_at__gt=frozen_at, lease_generation__lt=lease.generation).exists()


# ------------------------------------------------------------ hung Prometheus

def test_a_hung_prometheus_does_not_hold_up_an_oncall_rollback(make_version, kube_emulator, cluster, controllers,
                                                               settled):
    """Prometheus is stopped (SIGSTOP) while every rollout's analysis is asking it, with a 120 s timeout: the
    analysis lane is stuck, and the rollback, needing no metrics, ends within a tick and its Kubernetes calls."""
    scenarios = [Scenario(f"hung-{i}", make_version, cluster, kube_emulator) for i in range(3)]
    settled.extend(scenarios)
    for s in scenarios:
        start_rollout(s, ANALYSED_STEP)
    with prometheus_server() as prometheus:
        process = prometheus._process
        process.send_signal(signal.SIGSTOP)
        try:
            controller = controllers("leader", "--interval", "1", "--workers", "2",
                                     PROMETHEUS_URL=prometheus.url, PROMETHEUS_TIMEOUT_S="120")
            wait_for(lambda: at_step_zero(*scenarios), "every rollout at its first step")
            ticks = wait_for(lambda: ControllerLease.objects.values_list("tick_count", flat=True).first(),
                             "the controller ticked")
            # Two more ticks with every canary ready: every analysis has been asked for, and none can answer.
            wait_for(lambda: ControllerLease.objects.get().tick_count >= ticks + 2, "two more ticks")

            victim = scenarios[0]
            asked_at = timezone.now()
            services.rollback(victim.model, reason="pager", actor="oncall")
            event = wait_for(lambda: rolled_back(victim), "the rollback ended")
            took_s = (event.at - asked_at).total_seconds()
            assert process.poll() is None and not AnalysisRun.objects.exists()  # no analysis ever came back
        finally:
            process.send_signal(signal.SIGCONT)
    assert victim.replicas() == (REPLICAS, 0)
    assert took_s < 1 + 10, f"the rollback took {took_s:.1f} s"  # one 1 s tick, plus its Kubernetes calls
    print(f"\nrollback with Prometheus stopped: {took_s:.1f} s after it was asked for")
    assert controller.leads()
    assert timedelta(seconds=took_s) < timedelta(seconds=120)
