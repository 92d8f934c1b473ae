"""Drive a rollout live on loopback parts, in real time: the real controller
ticking against the Kubernetes emulator, `mlcp serve` processes of registry-signed
versions scraped by a real Prometheus, and traffic split by the replica ratio
the controller set. Shared by `manage.py demo` and tests/rollouts/test_live_rollouts.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devtools.serve_process import ServeProcess
from k8s import Cluster, DeploymentWorkloads, ReplicaRatioRouter
from k8s.canary import canary_name
from rollouts.choices import ACTIVE
from rollouts.controller import tick_holding_lease
from rollouts.models import AnalysisRun, Rollout, RolloutEvent

DEPLOYMENTS = "apps/v1/deployments"
SERVER_IMAGE = "mlcp/serve:dev"
# Analysis sized for Prometheus scraping every second and steps of seconds:
# windows of at least 5 scrapes, and few requests before a step may pass.
LIVE_ANALYSIS = {"min_window_s": 5, "min_requests": 20, "hold_budget_s": 60}
# The same, judging the predicted-class mix too (a canary of the same model that may answer differently).
LIVE_ANALYSIS_WITH_CLASSES = {**LIVE_ANALYSIS, "checks": ["burn_rate", "canary_vs_stable_errors", "latency_p95",
                                                          "traffic_split", "class_mix"]}


# ------------------------------------------------------------- the cluster

def stable_deployment(name: str, model: str, version: str | None, replicas: int) -> dict:
    """The model server's stable Deployment, as a platform team would apply it.

    `version` None: no model deployed yet (the first rollout fills it in).
    """
    selector = {"app.kubernetes.io/name": name, "mlcp.io/track": "stable"}
    identity = {"mlcp.io/model": model, "mlcp.io/version": version} if version else {}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name, **identity}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": selector},
                                  "spec": {"containers": [{"name": "server", "image": SERVER_IMAGE}]}}}}


def replicas(kube, namespace: str, deployment: str) -> tuple[int, int]:
    """(stable, canary) pods the emulator holds; a missing canary counts as 0."""
    stable = kube.object(DEPLOYMENTS, namespace, deployment)
    canary = kube.object(DEPLOYMENTS, namespace, canary_name(deployment))
    return stable["spec"]["replicas"], canary["spec"]["replicas"] if canary else 0


def stable_version_label(kube, namespace: str, deployment: str) -> str | None:
    """The model version the stable Deployment says it runs."""
    stable = kube.object(DEPLOYMENTS, namespace, deployment)
    return (stable["metadata"].get("labels") or {}).get("mlcp.io/version") if stable else None


class EmulatorSplit:
    """The canary's share of pods, read back through the Kubernetes API on each call.

    Its own API client: the traffic generator calls it from its threads while
    the controller uses its own.
    """

    def __init__(self, kube, namespace: str, deployment: str):
        self.cluster = Cluster(kube.api_client(), request_timeout=(2.0, 5.0))
        self.router = ReplicaRatioRouter(DeploymentWorkloads(self.cluster), namespace, deployment, total_replicas=1)

    def __call__(self) -> float:
        state = self.router.observe()
        pods = state.stable_weight + state.canary_weight
        return state.canary_weight / pods if pods else 0.0

    def close(self) -> None:
        self.cluster.close()


# ------------------------------------------------------------- the servers

def serve_version(version, directory: Path, track: str, *, fault_error_rate: float = 0.0,
                  seed: int = 0) -> ServeProcess:
    """Start `mlcp serve` on a registry version: its stored bytes, the registry's
    bundle and public key, and the digest pinned, as a pod of it would get them."""
    from registry import signing
    from registry.storage import default_store

    folder = Path(directory) / f"{version.model.name}-{version.number}-{track}"
    folder.mkdir(parents=True, exist_ok=True)
    artifact, bundle, key = folder / "model.onnx", folder / "model.sig", folder / "registry.pub"
    with open(artifact, "wb") as fh:  # verified on the way, from whichever store holds it
        for chunk in default_store().iter_verified(version.digest):
            fh.write(chunk)
    bundle.write_text(version.signature_bundle)
    key.write_text(signing.active_public_key().pem)
    extra = ["--digest", version.digest, "--fault-seed", str(seed)]
    if fault_error_rate:
        extra += ["--fault-error-rate", str(fault_error_rate)]
    return ServeProcess(artifact, bundle, [key], model=version.model.name, version=str(version.number),
                        track=track, extra_args=extra).start()


def never_predict(server: ServeProcess, klass: int | None) -> dict:
    """Make a running `mlcp serve` answer the runner-up wherever `klass` would win (None: stop)."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{server.url}/admin/fault", data=json.dumps({"never_class": klass}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


# ---------------------------------------------------------------- driving

@dataclass
class Narrator:
    """Turns what the controller did into lines: events, step weights, analysis verdicts.

    Analysis runs are said when their step or verdict changes (one a second
    otherwise), with the latest reason.
    """

    rollout_id: int
    say: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    _last_event: int = 0
    _last_run: int = 0
    _last_verdict: tuple | None = None
    _last_replicas: tuple | None = None

    def __call__(self, split: tuple[int, int]) -> None:
        for run in AnalysisRun.objects.filter(rollout_id=self.rollout_id, pk__gt=self._last_run).order_by("pk"):
            self._last_run = run.pk
            if (run.step, run.verdict) != self._last_verdict:
                self._last_verdict = (run.step, run.verdict)
                self._line(f"analysis at step {run.step + 1}: {run.verdict.upper()} - {run.reason}")
        for event in RolloutEvent.objects.filter(rollout_id=self.rollout_id, pk__gt=self._last_event).order_by("pk"):
            self._last_event = event.pk
            move = event.new if event.old in ("", event.new) else f"{event.old} -> {event.new}"
            self._line(f"{move}: {event.reason} [{event.actor}]")
        if split != self._last_replicas:
            self._last_replicas = split
            self._line(f"pods stable {split[0]} / canary {split[1]} "
                       f"(the canary takes {100 * split[1] / max(1, sum(split)):.0f}% of traffic)")

    def _line(self, text: str) -> None:
        self.say(f"    t+{time.monotonic() - self.started:5.1f}s  {text}")


def drive(controller, rollout: Rollout, kube, *, timeout_s: float, interval_s: float = 1.0,
          say: Callable[[str], None] = print, between_ticks: Callable[[Rollout], None] | None = None) -> Rollout:
    """Tick `controller` in real time until `rollout` ends; raise TimeoutError after `timeout_s`.

    After each tick the stable and canary Deployments settle (the emulator's
    `settle_deployments`: the rollout controller waits for ready pods), what happened is
    said, and `between_ticks(rollout)` runs (a test flips a fault switch there).
    """
    traffic = rollout.traffic
    namespace, deployment = traffic["namespace"], traffic["deployment"]
    narrate = Narrator(rollout.pk, say)
    deadline = time.monotonic() + timeout_s
    while True:
        tick_at = time.monotonic()
        # Through the lease, as runcontroller does: the heartbeat tells the UI a controller is acting.
        if tick_holding_lease(controller, "live-rollout", ttl_s=60) is None:
            raise RuntimeError("another controller holds the lease; stop it before driving a rollout here")
        kube.settle_deployments(namespace, deployment, canary_name(deployment))
        rollout.refresh_from_db()
        narrate(replicas(kube, namespace, deployment))
        if rollout.phase not in ACTIVE:
            return rollout
        if time.monotonic() > deadline:
            raise TimeoutError(f"rollout {rollout.pk} still {rollout.phase} at step {rollout.current_step} "
                               f"after {timeout_s:.0f}s: {rollout.message}")
        if between_ticks is not None:
            between_ticks(rollout)
        time.sleep(max(0.0, interval_s - (time.monotonic() - tick_at)))
