"""The controller end to end: the real `kubernetes` client against the kmock
emulator, analysis against a real Prometheus holding recorded traffic, and
time driven explicitly (each tick gets its `now`), so nothing sleeps.
"""

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from k8s import Cluster, RetryPolicy
from registry import services as registry
from registry.choices import VersionStatus
from registry.models import ModelVersion, RegisteredModel
from rollouts import services
from rollouts.choices import Phase
from rollouts.controller import Controller, plan
from rollouts.metrics import PrometheusMetricsProvider
from rollouts.models import AnalysisRun, RolloutEvent
from tests.rollouts.conftest import FAST, SLOW
from devtools.embedded.prometheus import TrafficPhase, arm_traffic, prometheus_server
from tests.factories import set_target
from tests.support.servers import free_port

pytestmark = pytest.mark.django_db
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
TICK = timedelta(seconds=60)
PAUSE_S = 300
REPLICAS = 10
DEPLOYMENTS = "apps/v1/deployments"
FAST_RETRY = RetryPolicy(attempts=4, base_delay_s=0.005, max_delay_s=0.02)


def _minutes(n):
    return T0 + timedelta(minutes=n)


def _arms(model, canary_phases, stable_rps=80.0):
    start = _minutes(-15)
    return (arm_traffic(model, "2", "canary", start, canary_phases)
            + arm_traffic(model, "1", "stable", start, [TrafficPhase(_minutes(90), stable_rps, 0.0, FAST)]))


@pytest.fixture(scope="module")
def recorded():
    """Prometheus with one model per scenario (canary version 2 beside stable 1); `quiet` has no traffic."""
    samples = (
        _arms("healthy", [TrafficPhase(_minutes(90), 20.0, 0.0, FAST)])
        + _arms("spike", [TrafficPhase(_minutes(7), 20.0, 0.0, FAST), TrafficPhase(_minutes(90), 20.0, 0.10, FAST)])
        + _arms("slow", [TrafficPhase(_minutes(90), 20.0, 0.0, SLOW)])
    )
    with prometheus_server(backfill=samples) as server:
        yield server


@pytest.fixture
def cluster(kube_emulator):
    # Generous: the emulator shares this process's CPU, and no test here waits for a timeout to fire.
    cluster = Cluster(kube_emulator.api_client(), request_timeout=(10.0, 30.0), retry=FAST_RETRY)
    yield cluster
    kube_emulator.clear_faults()
    cluster.close()


@pytest.fixture
def controller(cluster, recorded):
    return Controller(cluster, PrometheusMetricsProvider(recorded.url, timeout_s=5), max_workers=0)


class Scenario:
    """A model with production version 1 on a stable Deployment, and an approved version 2."""

    def __init__(self, name, make_version, cluster, kube):
        self.kube, self.cluster = kube, cluster
        self.first_request = kube.mark()  # the emulator serves the whole session: count only ours
        self.namespace = f"t-{uuid.uuid4().hex[:8]}"
        self.deployment = f"{name}-{uuid.uuid4().hex[:6]}"
        self.model = RegisteredModel.objects.create(name=name)
        self.v1 = make_version(self.model, "deployed", production=True)
        self.v2 = make_version(self.model, "approved")
        labels = {"app.kubernetes.io/name": self.deployment, "mlcp.io/track": "stable"}
        cluster.apps.create_namespaced_deployment(self.namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": self.deployment, "labels": {"mlcp.io/model": name, "mlcp.io/version": "1"}},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "server", "image": "model-server:1"}]}}}})
        self.settle()

    def start(self, **kw):
        set_target(self.model, {"namespace": self.namespace, "deployment": self.deployment, "replicas": REPLICAS})
        steps = [{"weight": w, "pause_s": PAUSE_S} for w in (10, 25, 50)] + [100]
        # The recording gives the canary a fixed fifth of the traffic whatever its step: a recording, not a
        # router, so the traffic-split guard would rightly hold every step as `invalid`. These scenarios are
        # about the other checks; the guard has its own (tests/rollouts/test_traffic_split.py, and live in
        # test_live_analysis.py, where traffic follows the router).
        kw.setdefault("analysis", {"checks": ["burn_rate", "canary_vs_stable_errors", "latency_p95"]})
        self.rollout = services.start_rollout(self.model, self.v2, actor="ci-bot", steps=steps, **kw)
        return self.rollout

    def settle(self):
        """What the Deployment controller would do: every desired pod updated and ready."""
        self.kube.settle_deployments(self.namespace, self.deployment, f"{self.deployment}-canary")

    def replicas(self):
        stable = self.kube.object(DEPLOYMENTS, self.namespace, self.deployment)
        canary = self.kube.object(DEPLOYMENTS, self.namespace, f"{self.deployment}-canary")
        return stable["spec"]["replicas"], canary["spec"]["replicas"] if canary else None

    def run(self, controller, start, until, *, stop_when_done=True, before_tick=None):
        """Tick every minute from `start` up to `until`; returns [(now, outcome)]."""
        seen, now = [], start
        while now <= until:
            if before_tick:
                before_tick(now)
            seen.append((now, controller.tick(now).get(self.rollout.pk)))
            self.settle()
            self.rollout.refresh_from_db()
            if stop_when_done and self.rollout.phase not in (Phase.PENDING, Phase.PROGRESSING, Phase.PROMOTING,
                                                            Phase.ROLLING_BACK):
                break
            now += TICK
        return seen

    def statuses(self):
        """(version 1's status, version 2's status), read fresh."""
        return tuple(ModelVersion.objects.get(pk=v.pk).status for v in (self.v1, self.v2))

    def run_watching_statuses(self, controller, start, until):
        """`run`, recording the versions' statuses before every tick and once after the last."""
        seen = []
        self.run(controller, start, until, before_tick=lambda now: seen.append(self.statuses()))
        return [*dict.fromkeys(seen + [self.statuses()])]

    def step_events(self):
        """(step, weight) of every step the controller started, in order."""
        return [(e.step, e.evidence.get("weight")) for e in self.rollout.events.filter(new=Phase.PROGRESSING)]

    def canary_patches(self):
        """How many writes the API accepted for the canary Deployment after creating it."""
        name = f"{self.deployment}-canary"
        return sum(1 for method, _, plural, _, obj, _ in self.kube.requests(since=self.first_request)
                   if plural == "deployments" and obj == name and method == "PATCH")


@pytest.fixture
def scenario(make_version, cluster, kube_emulator):
    return lambda name: Scenario(name, make_version, cluster, kube_emulator)


def test_healthy_canary_promotes_through_every_step(scenario, controller):
    s = scenario("healthy")
    s.start()
    assert s.statuses() == (VersionStatus.DEPLOYED, VersionStatus.CANARY)
    weights_seen = []
    s.run(controller, T0, _minutes(30), before_tick=lambda now: weights_seen.append(s.replicas()))

    assert s.rollout.phase == Phase.SUCCEEDED
    assert s.step_events() == [(0, None), (1, 25), (2, 50)]
    assert [r for r in dict.fromkeys(weights_seen)] == [(10, None), (9, 1), (7, 3), (5, 5), (10, 5)]
    assert s.replicas() == (10, 0)
    assert registry.alias_target(s.model, "production") == s.v2
    s.v1.refresh_from_db(), s.v2.refresh_from_db()
    assert (s.v1.status, s.v2.status) == (VersionStatus.APPROVED, VersionStatus.DEPLOYED)
    # Each step's analysis passed before the next began.
    for step in (0, 1, 2):
        assert AnalysisRun.objects.filter(rollout=s.rollout, step=step, verdict="pass").exists()
    assert not AnalysisRun.objects.filter(rollout=s.rollout).exclude(verdict="pass").exists()
    stable = s.kube.object(DEPLOYMENTS, s.namespace, s.deployment)
    assert stable["metadata"]["labels"]["mlcp.io/version"] == "2"


def test_the_version_is_canary_in_flight_and_deployed_only_after_promotion(scenario, controller):
    s = scenario("healthy")
    s.start()
    assert s.run_watching_statuses(controller, T0, _minutes(30)) == [
        (VersionStatus.DEPLOYED, VersionStatus.CANARY),  # every step, and while promoting
        (VersionStatus.APPROVED, VersionStatus.DEPLOYED),  # production moved: one deployed version at a time
    ]


def test_a_rolled_back_canary_never_shows_deployed(scenario, controller):
    s = scenario("spike")
    s.start()
    assert s.run_watching_statuses(controller, T0, _minutes(30)) == [
        (VersionStatus.DEPLOYED, VersionStatus.CANARY),
        (VersionStatus.DEPLOYED, VersionStatus.ROLLED_BACK),
    ]
    assert s.rollout.phase == Phase.ROLLED_BACK


def test_error_spike_in_canary_rolls_back_at_once(scenario, controller):
    s = scenario("spike")
    s.start()
    ticks = s.run(controller, T0, _minutes(30))

    assert s.rollout.phase == Phase.ROLLED_BACK
    # The spike starts at minute 7, in step 1; the first tick that sees it rolls back.
    assert ticks[-1][0] == _minutes(8) and s.rollout.current_step == 1
    assert s.replicas() == (10, 0)
    s.v2.refresh_from_db()
    assert s.v2.status == VersionStatus.ROLLED_BACK
    assert registry.alias_target(s.model, "production") == s.v1
    failed = AnalysisRun.objects.get(rollout=s.rollout, verdict="fail")
    failed_checks = {c["check"] for c in failed.evidence["checks"] if c["verdict"] == "fail"}
    assert "canary_vs_stable_errors" in failed_checks and "burn_rate" in failed_checks
    assert any('track="canary"' in q["query"] and q["value"] for q in failed.evidence["queries"])
    event = s.rollout.events.get(new=Phase.ROLLING_BACK)
    assert event.actor == "controller" and "analysis failed at step 2" in event.reason
    assert event.evidence["verdict"] == "fail"


def test_latency_regression_rolls_back(scenario, controller):
    s = scenario("slow")
    s.start()
    s.run(controller, T0, _minutes(30))

    assert s.rollout.phase == Phase.ROLLED_BACK and s.rollout.current_step == 0
    failed = AnalysisRun.objects.get(rollout=s.rollout, verdict="fail")
    assert [c["check"] for c in failed.evidence["checks"] if c["verdict"] == "fail"] == ["latency_p95"]
    assert "p95" in s.rollout.abort_reason
    assert s.replicas() == (10, 0)


def test_no_traffic_holds_and_never_promotes_then_aborts_at_the_deadline(scenario, controller):
    s = scenario("quiet")
    s.start()
    deadline = T0 + timedelta(seconds=PAUSE_S + 600)
    s.run(controller, T0, deadline - TICK)

    assert s.rollout.phase == Phase.PROGRESSING and s.rollout.current_step == 0
    assert "inconclusive" in s.rollout.message
    assert set(AnalysisRun.objects.filter(rollout=s.rollout).values_list("verdict", flat=True)) == {"inconclusive"}
    assert s.replicas() == (9, 1)

    assert s.statuses() == (VersionStatus.DEPLOYED, VersionStatus.CANARY)
    s.run(controller, deadline, deadline)
    assert s.rollout.phase == Phase.ABORTED
    assert "did not pass by its deadline" in s.rollout.abort_reason and "inconclusive" in s.rollout.abort_reason
    assert s.replicas() == (10, 0)
    s.v2.refresh_from_db()
    assert s.v2.status == VersionStatus.APPROVED  # not proven bad: it may ship again


def test_prometheus_down_holds_then_aborts_past_the_deadline(scenario, cluster):
    dead = PrometheusMetricsProvider(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    controller = Controller(cluster, dead, max_workers=0)
    s = scenario("healthy")
    s.start()
    deadline = T0 + timedelta(seconds=PAUSE_S + 600)
    for now in (T0, T0 + TICK, T0 + 6 * TICK, deadline - TICK):
        s.run(controller, now, now)
        assert s.rollout.phase == Phase.PROGRESSING and s.rollout.current_step == 0
    assert "Prometheus unavailable" in s.rollout.message
    assert not AnalysisRun.objects.filter(rollout=s.rollout).exists()  # nothing was read as zero

    assert s.statuses() == (VersionStatus.DEPLOYED, VersionStatus.CANARY)
    s.run(controller, deadline, deadline)
    assert s.rollout.phase == Phase.ABORTED
    assert "Prometheus unavailable" in s.rollout.abort_reason
    assert s.replicas() == (10, 0)


def test_controller_killed_mid_step_resumes_with_each_step_applied_once(scenario, cluster, recorded, kube_emulator):
    s = scenario("healthy")
    s.start()
    first = Controller(cluster, PrometheusMetricsProvider(recorded.url), max_workers=0)
    s.run(first, T0, _minutes(7))
    assert s.rollout.current_step == 1
    del first  # nothing survives but the database and the cluster

    fresh_cluster = Cluster(kube_emulator.api_client(), retry=FAST_RETRY)
    second = Controller(fresh_cluster, PrometheusMetricsProvider(recorded.url), max_workers=0)
    s.run(second, _minutes(8), _minutes(30))
    fresh_cluster.close()

    assert s.rollout.phase == Phase.SUCCEEDED
    assert s.step_events() == [(0, None), (1, 25), (2, 50)]
    # One write per weight change (1 -> 3 -> 5) and one to scale it to zero: no step re-applied.
    assert s.canary_patches() == 3


def test_kubernetes_api_failing_intermittently_still_converges(scenario, controller, kube_emulator):
    s = scenario("healthy")
    s.start()
    outcomes = []

    def flaky(now):
        # Every third tick the API fails more often than one call retries.
        if int((now - T0) / TICK) % 3 == 0:
            kube_emulator.fail_next(FAST_RETRY.attempts + 1, status=503, reason="ServiceUnavailable")

    outcomes = s.run(controller, T0, _minutes(45), before_tick=flaky)
    assert any(o and o.startswith("error") for _, o in outcomes)
    assert s.rollout.phase == Phase.SUCCEEDED
    assert s.step_events() == [(0, None), (1, 25), (2, 50)]
    assert s.replicas() == (10, 0)
    assert registry.alias_target(s.model, "production") == s.v2


def test_oncall_rollback_mid_rollout_wins_over_the_next_step(scenario, controller):
    s = scenario("healthy")
    s.start()
    s.run(controller, T0, _minutes(9))
    assert (s.rollout.phase, s.rollout.current_step) == (Phase.PROGRESSING, 1)
    now = _minutes(10)  # step 1's pause is over: the controller would start step 2
    from rollouts.controller import RolloutState
    state = RolloutState.of(s.rollout)
    action = plan(state, controller.observe(s.rollout, state, now))
    assert action.do == "next_step"

    services.rollback(s.model, reason="customers report bad predictions", actor="oncall-alice")
    assert controller.apply(action, now) == "superseded"
    assert s.replicas() == (7, 3)  # step 2 (50%) was never applied

    s.run(controller, now + TICK, now + TICK)
    assert s.rollout.phase == Phase.ROLLED_BACK
    assert s.replicas() == (10, 0)
    assert s.rollout.abort_reason == "customers report bad predictions"
    assert RolloutEvent.objects.get(rollout=s.rollout, new=Phase.ROLLING_BACK).actor == "oncall-alice"
    s.v2.refresh_from_db()
    assert s.v2.status == VersionStatus.ROLLED_BACK
    assert registry.alias_target(s.model, "production") == s.v1


def test_rollback_without_a_rollout_in_flight_restores_the_previous_version(scenario, controller):
    s = scenario("healthy")
    s.start()
    s.run(controller, T0, _minutes(30))
    assert registry.alias_target(s.model, "production") == s.v2

    rollback = services.rollback(s.model, reason="v2 misclassifies night images", actor="oncall-bob")
    assert (rollback.kind, rollback.version, rollback.stable_version) == ("rollback", s.v1, s.v2)
    s.rollout = rollback
    s.run(controller, _minutes(40), _minutes(45))

    assert rollback.phase == Phase.SUCCEEDED
    assert registry.alias_target(s.model, "production") == s.v1
    s.v1.refresh_from_db(), s.v2.refresh_from_db()
    assert (s.v1.status, s.v2.status) == (VersionStatus.DEPLOYED, VersionStatus.ROLLED_BACK)
    stable = s.kube.object(DEPLOYMENTS, s.namespace, s.deployment)
    assert stable["metadata"]["labels"]["mlcp.io/version"] == "1"
    assert s.replicas() == (10, 0)
