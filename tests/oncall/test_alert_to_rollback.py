"""The page's whole path on loopback, in real time: a production version's errors fire the shipped SLO page in a
real Prometheus, a real Alertmanager delivers it to mlcp's receiver (a real web server on the test database)
with an `oncall` token, and the real controller, ticking against the Kubernetes emulator, rolls the model back
to its previous version, where the traffic then goes.

The rules are the shipped ones (oncall.rules) with windows of seconds instead of hours: Prometheus scrapes and
evaluates every second here, and a test cannot wait an hour for a 1 h window. Only the windows and `for` change;
the expressions, labels and annotations are the template's.
"""

import time
import uuid

import pytest

from controlplane.accounts import issue_token
from controlplane.roles import Role
from devtools.embedded.alerting import Webhook, alerting_stack
from devtools.live_rollout import EmulatorSplit, replicas, serve_version, stable_deployment, stable_version_label
from devtools.reference_models import build_reference_model, golden_inputs_and_labels
from devtools.traffic import CANARY, STABLE, TrafficGenerator
from k8s import Cluster, RetryPolicy
from k8s.canary import canary_name
from oncall import rules
from oncall.models import HandledAlert
from oncall.services import set_runbook_policy
from registry import services as registry
from registry.choices import VersionStatus
from registry.models import AuditEvent, RegisteredModel
from rollouts import services
from rollouts.choices import ACTIVE, Phase, RolloutKind
from rollouts.controller import Controller, tick_holding_lease
from rollouts.metrics import PrometheusMetricsProvider
from rollouts.models import Rollout
from tests.factories import set_target
from tests.support.webserver import gunicorn_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
PODS = 4
TEST_WINDOWS = rules.BurnWindows(fast_long="20s", fast_short="5s", slow_long="60s", slow_short="10s", hold="2s")
TIMEOUT_S = 90.0


class Production:
    """Model `name` on the emulator: v1 on the stable Deployment, a `mlcp serve` per version, traffic sent to the
    version the stable Deployment says it runs (the generator's "canary" arm is v2's server, "stable" v1's)."""

    def __init__(self, name, kube, tmp_path):
        self.kube, self.namespace, self.deployment = kube, f"oncall-{uuid.uuid4().hex[:8]}", f"{name}-server"
        self.model = RegisteredModel.objects.create(name=name)
        self.v1 = self._version(build_reference_model("resnet").onnx_bytes, ["gating", "approved", "canary", "deployed"])
        registry.move_alias(self.model, "production", self.v1, actor="test", reason="test setup")
        self.v2 = self._version(build_reference_model("mobilenet").onnx_bytes, ["gating", "approved"])
        self.cluster = Cluster(kube.api_client(), request_timeout=(2.0, 5.0),
                               retry=RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05))
        self.cluster.apps.create_namespaced_deployment(
            self.namespace, stable_deployment(self.deployment, name, "1", PODS))
        kube.settle_deployments(self.namespace, self.deployment)
        set_target(self.model, {"namespace": self.namespace, "deployment": self.deployment, "replicas": PODS})
        self.servers = [serve_version(self.v1, tmp_path, "stable"), serve_version(self.v2, tmp_path, "stable")]
        self.split = EmulatorSplit(kube, self.namespace, self.deployment)
        self.lines: list[str] = []

    def _version(self, data, path):
        version = registry.ingest_bytes(self.model, data, "model.onnx", registry.VersionMetadata(), actor="test")
        for status in path:
            registry.transition_version(version, status, actor="test", reason="test setup")
        return version

    def serving_v2(self) -> float:
        return 1.0 if stable_version_label(self.kube, self.namespace, self.deployment) == "2" else 0.0

    def start_traffic(self):
        inputs, _ = golden_inputs_and_labels()
        self.traffic = TrafficGenerator(self.servers[0].url, self.servers[1].url, self.serving_v2, inputs,
                                        rate_per_s=40, max_requests=40 * 150, max_seconds=150, workers=2).start()

    def tick_until(self, controller, done, what: str):
        """Tick the controller once a second, as `runcontroller` does, until `done()` is true."""
        deadline = time.monotonic() + TIMEOUT_S
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not happen within {TIMEOUT_S:.0f}s:\n" + "\n".join(self.lines))
            tick_holding_lease(controller, "oncall-test", ttl_s=60)
            self.kube.settle_deployments(self.namespace, self.deployment, canary_name(self.deployment))
            self.lines.append(f"{time.monotonic():.1f} v{stable_version_label(self.kube, self.namespace, self.deployment)}"
                              f" {list(Rollout.objects.filter(model=self.model).values_list('kind', 'phase'))}")
            time.sleep(1.0)

    def close(self):
        if getattr(self, "traffic", None):
            self.report = self.traffic.stop()
        for server in self.servers:
            server.stop()
        self.split.close()
        self.cluster.close()


@pytest.fixture
def production(kube_emulator, tmp_path):
    made = Production("fraud-scorer", kube_emulator, tmp_path)
    yield made
    made.close()


def test_a_failing_production_version_pages_and_mlcp_rolls_it_back(production):
    p = production
    oncall_token, viewer_token = issue_token("alertmanager", Role.ONCALL), issue_token("dashboards", Role.VIEWER)
    set_runbook_policy(p.model, {"actions": {rules.MODEL_SLO_BURN: "rollback"}}, actor="test", reason="test setup")
    with gunicorn_server() as (base_url, _):
        receiver = f"{base_url}/api/v1/alerts/alertmanager"
        hooks = [Webhook("mlcp", receiver, oncall_token), Webhook("no-oncall-role", receiver, viewer_token)]
        shipped = {"model-slo.rules.yaml": rules.to_yaml(rules.model_slo_rules(TEST_WINDOWS))}
        with alerting_stack(shipped, hooks) as (prometheus, alertmanager):
            prometheus.scrape([server.target for server in p.servers])
            controller = Controller(p.cluster, PrometheusMetricsProvider(prometheus.url, timeout_s=5), max_workers=0)
            p.start_traffic()

            # The demo's release: v2 replaces v1 (one 100% step), and production traffic follows it.
            release = services.start_rollout(p.model, p.v2, actor="ci-bot", steps=[100])
            p.tick_until(controller, lambda: Rollout.objects.get(pk=release.pk).phase == Phase.SUCCEEDED,
                         "the release")
            assert registry.alias_target(p.model, "production") == p.v2

            # v2 starts failing half its requests: the page fires, Alertmanager delivers it, mlcp rolls back.
            p.servers[1].set_fault(error_rate=0.5)
            rolled_back = lambda: Rollout.objects.filter(model=p.model, kind=RolloutKind.ROLLBACK,  # noqa: E731
                                                         phase=Phase.SUCCEEDED).exists()
            p.tick_until(controller, rolled_back, "the alert's rollback")
            served_v1_at_rollback = p.traffic.report().count(STABLE)

            # Production is back on v1 and its traffic with it; the alert resolves, which undoes nothing.
            resolved = lambda: HandledAlert.objects.filter(model_name=p.model.name, status="resolved").exists()  # noqa: E731
            p.tick_until(controller, resolved, "the alert's resolution")
            delivered = alertmanager.metric("alertmanager_notifications_total", integration="webhook")
            refused = alertmanager.metric("alertmanager_notifications_failed_total", integration="webhook")
    p.close()

    assert registry.alias_target(p.model, "production") == p.v1
    p.v1.refresh_from_db(), p.v2.refresh_from_db()
    assert (p.v1.status, p.v2.status) == (VersionStatus.DEPLOYED, VersionStatus.ROLLED_BACK)
    assert replicas(p.kube, p.namespace, p.deployment)[0] == PODS
    assert stable_version_label(p.kube, p.namespace, p.deployment) == "1"
    assert p.report.count(STABLE) > served_v1_at_rollback  # traffic went on, on v1
    assert p.report.count(CANARY, 500) > 0  # v2's failures were real answers to real requests

    # One rollback, whatever Alertmanager re-sent; the resolution acted on nothing.
    (rollback,) = Rollout.objects.filter(model=p.model, kind=RolloutKind.ROLLBACK)
    assert not Rollout.objects.filter(model=p.model, phase__in=ACTIVE).exists()
    assert delivered >= 2, "Alertmanager repeats the group every 2 s; the receiver saw repeats"
    fired = HandledAlert.objects.get(model_name=p.model.name, status="firing")
    assert (fired.outcome, fired.rollout_id, fired.labels["version"]) == ("acted", rollback.pk, "2")
    assert HandledAlert.objects.get(model_name=p.model.name, status="resolved").outcome == "resolved"
    # The alert is the reason, on the rollout's timeline and in the model's audit trail.
    assert f"fingerprint {fired.fingerprint}" in rollback.events.get(new=Phase.PENDING).reason
    audit = AuditEvent.objects.get(action="alert.rollback", detail__status="firing")
    assert audit.actor == "alertmanager" and audit.detail["labels"]["alertname"] == rules.MODEL_SLO_BURN
    assert audit.detail["annotations"]["runbook_url"].endswith("#mlcpmodelerrorbudgetburn")
    # The receiver without the oncall role was refused every time.
    assert refused > 0 and not HandledAlert.objects.exclude(received_by="alertmanager").exists()
