"""Rollouts end to end in real time: stable and canary `mlcp serve` processes of
registry-signed reference models, a real Prometheus scraping them every second,
traffic split by the replica ratio the controller set in the Kubernetes
emulator (read back each batch), and the real controller ticking once a second.
"""

import uuid

import pytest

from devtools.embedded.prometheus import prometheus_server
from devtools.live_rollout import (
    LIVE_ANALYSIS,
    EmulatorSplit,
    drive,
    replicas,
    serve_version,
    stable_deployment,
)
from devtools.reference_models import build_reference_model, golden_inputs_and_labels
from devtools.traffic import CANARY, TrafficGenerator
from k8s import Cluster, RetryPolicy
from registry import services as registry
from registry.choices import VersionStatus
from registry.models import RegisteredModel
from rollouts import services
from rollouts.choices import Phase
from rollouts.controller import Controller
from rollouts.metrics import PrometheusMetricsProvider
from rollouts.models import AnalysisRun
from tests.factories import set_target

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
PODS = 10
RATE_PER_S = 80.0  # both arms: the canary's 10% still serves min_requests in a 5 s window
# A bound for a rollout that never ends, not how fast one should: a loaded machine serves fewer requests,
# so analysis may hold a step for more windows before it passes.
ROLLOUT_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def prometheus():
    with prometheus_server(scrape_interval_s=1.0) as server:
        yield server


@pytest.fixture(scope="module")
def artifacts():
    """Two different trained models (cached after the first build): stable and canary bytes."""
    return build_reference_model("resnet").onnx_bytes, build_reference_model("mobilenet").onnx_bytes


class Live:
    """Model `name`: production version 1 on a stable Deployment, approved version 2,
    a server for each, Prometheus scraping both, and the controller."""

    def __init__(self, name, artifacts, kube, prometheus, tmp_path):
        self.kube, self.prometheus = kube, prometheus
        self.namespace, self.deployment = f"live-{uuid.uuid4().hex[:8]}", f"{name}-server"
        self.model = RegisteredModel.objects.create(name=name)
        self.v1 = self._version(artifacts[0], ["gating", "approved", "canary", "deployed"])
        registry.move_alias(self.model, "production", self.v1, actor="test", reason="test setup")
        self.v2 = self._version(artifacts[1], ["gating", "approved"])
        self.cluster = Cluster(kube.api_client(), request_timeout=(10.0, 30.0),
                               retry=RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05))
        self.cluster.apps.create_namespaced_deployment(
            self.namespace, stable_deployment(self.deployment, name, "1", PODS))
        kube.settle_deployments(self.namespace, self.deployment)
        self.stable = serve_version(self.v1, tmp_path, "stable")
        self.canary = serve_version(self.v2, tmp_path, "canary", seed=7)
        prometheus.scrape([self.stable.target, self.canary.target])
        self.controller = Controller(self.cluster, PrometheusMetricsProvider(prometheus.url, timeout_s=5),
                                     max_workers=0)
        self.split = EmulatorSplit(kube, self.namespace, self.deployment)
        self.lines: list[str] = []
        self.closed = False

    def _version(self, data, path):
        version = registry.ingest_bytes(self.model, data, "model.onnx", registry.VersionMetadata(), actor="test")
        for status in path:
            registry.transition_version(version, status, actor="test", reason="test setup")
        return version

    def start(self, pause_s):
        set_target(self.model, {"namespace": self.namespace, "deployment": self.deployment, "replicas": PODS})
        steps = [{"weight": w, "pause_s": pause_s} for w in (10, 25, 50)] + [100]
        self.rollout = services.start_rollout(self.model, self.v2, actor="ci-bot", steps=steps,
                                              analysis=LIVE_ANALYSIS)
        inputs, _ = golden_inputs_and_labels()
        budget_s = 2 * ROLLOUT_TIMEOUT_S  # traffic outlasts the rollout; close() stops it when the test ends
        self.traffic = TrafficGenerator(self.stable.url, self.canary.url, self.split, inputs,
                                        rate_per_s=RATE_PER_S, max_requests=int(RATE_PER_S * budget_s),
                                        max_seconds=budget_s, workers=4).start()

    def drive(self, between_ticks=None):
        try:
            return drive(self.controller, self.rollout, self.kube, timeout_s=ROLLOUT_TIMEOUT_S,
                         say=self.lines.append, between_ticks=between_ticks)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n" + "\n".join(self.lines))

    def close(self):
        if self.closed:
            return
        self.closed = True
        print(f"{self.model.name}:", *self.lines, sep="\n")  # shown by pytest when a test fails
        if getattr(self, "traffic", None):
            self.report = self.traffic.stop()
        for server in (self.stable, self.canary):
            server.stop()
        self.split.close()
        self.cluster.close()


@pytest.fixture
def live(artifacts, kube_emulator, prometheus, tmp_path):
    made = []

    def make(name):
        made.append(Live(name, artifacts, kube_emulator, prometheus, tmp_path))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_healthy_canary_promotes_through_every_step(live):
    s = live("live-healthy")
    s.start(pause_s=6)
    rollout = s.drive()
    s.close()

    assert rollout.phase == Phase.SUCCEEDED, "\n".join(s.lines)
    started = [(e.step, e.evidence.get("weight")) for e in rollout.events.filter(new=Phase.PROGRESSING)]
    assert started == [(0, None), (1, 25), (2, 50)]
    for step in (0, 1, 2):  # each step passed its own analysis before the next began
        assert AnalysisRun.objects.filter(rollout=rollout, step=step, verdict="pass").exists()
    assert not AnalysisRun.objects.filter(rollout=rollout, verdict="fail").exists()
    assert registry.alias_target(s.model, "production") == s.v2
    s.v1.refresh_from_db(), s.v2.refresh_from_db()
    assert (s.v1.status, s.v2.status) == (VersionStatus.APPROVED, VersionStatus.DEPLOYED)
    assert replicas(s.kube, s.namespace, s.deployment) == (PODS, 0)
    # Traffic followed the emulator: the canary served real requests, all of them answered.
    assert s.report.count(CANARY, 200) > 3 * LIVE_ANALYSIS["min_requests"]
    assert s.report.count(status=200) == s.report.sent


def test_canary_failing_mid_rollout_is_rolled_back_by_the_controller(live):
    s = live("live-faulty")
    s.start(pause_s=20)  # long steps: the fault lands while step 1 holds
    flipped = []

    def break_canary_in_step_1(rollout):
        if not flipped and rollout.current_step == 1:
            s.canary.set_fault(error_rate=0.3)
            flipped.append(rollout.current_step)

    rollout = s.drive(between_ticks=break_canary_in_step_1)
    s.close()

    assert flipped == [1], "\n".join(s.lines)
    assert rollout.phase == Phase.ROLLED_BACK, "\n".join(s.lines)
    assert rollout.current_step >= 1
    assert replicas(s.kube, s.namespace, s.deployment) == (PODS, 0)  # all traffic on stable, canary at zero
    assert s.split() == 0.0
    s.v2.refresh_from_db()
    assert s.v2.status == VersionStatus.ROLLED_BACK
    assert registry.alias_target(s.model, "production") == s.v1
    failed = AnalysisRun.objects.filter(rollout=rollout, verdict="fail").get()
    assert any(c["verdict"] == "fail" for c in failed.evidence["checks"])
    assert any('track="canary"' in q["query"] and q["value"] for q in failed.evidence["queries"])
    event = rollout.events.get(new=Phase.ROLLING_BACK)
    assert event.actor == "controller" and "analysis failed" in event.reason
    assert s.report.count(CANARY, 500) > 0  # the fault really failed users' requests
