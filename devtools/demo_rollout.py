"""The rollout half of `manage.py demo`: a first production deploy, a healthy
canary that promotes, and a failing canary the controller rolls back by itself,
all live on loopback (Kubernetes emulator, Prometheus, `mlcp serve`, traffic).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from controlplane.errors import MlcpError
from devtools.embedded.kube import start_kube_emulator
from devtools.embedded.prometheus import prometheus_server
from devtools.live_rollout import (
    LIVE_ANALYSIS,
    EmulatorSplit,
    drive,
    serve_version,
    stable_deployment,
    stable_version_label,
)
from devtools.traffic import CANARY, STABLE, TrafficGenerator
from k8s import Cluster
from rollouts import services
from rollouts.choices import ACTIVE
from rollouts.controller import Controller
from rollouts.metrics import PrometheusMetricsProvider

NAMESPACE, DEPLOYMENT, PODS = "demo", "digits-server", 10
CANARY_STEPS = [{"weight": w, "pause_s": 5} for w in (10, 25, 50)] + [100]
FAULT_ERROR_RATE = 0.3  # the bad canary's server fails this share of requests
RATE_PER_S = 80.0
ROLLOUT_TIMEOUT_S = 90.0
SCRAPE_S = 1.0


@dataclass
class Platform:
    """The loopback stand-ins for a cluster and its monitoring, and the controller."""

    kube: object
    cluster: Cluster
    prometheus: object
    controller: Controller
    workdir: Path

    @property
    def traffic(self) -> dict:
        return {"namespace": NAMESPACE, "deployment": DEPLOYMENT, "replicas": PODS}


@contextlib.contextmanager
def platform(say: Callable[[str], None]) -> Iterator[Platform]:
    """Start the emulator (with the model server's empty stable Deployment) and Prometheus; stop both after."""
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the emulator's per-request log
    workdir = Path(tempfile.mkdtemp(prefix="mlcp-demo-rollouts-"))
    kube = start_kube_emulator()
    cluster = Cluster(kube.api_client(), request_timeout=(2.0, 5.0))
    try:
        # What a platform team applies once: the server's Deployment, no model in it yet.
        cluster.apps.create_namespaced_deployment(NAMESPACE, stable_deployment(DEPLOYMENT, "", None, 0))
        kube.settle_deployments(NAMESPACE, DEPLOYMENT)
        with prometheus_server(scrape_interval_s=SCRAPE_S) as prometheus:
            say(f"Kubernetes API emulator at {kube.url} (Deployment {NAMESPACE}/{DEPLOYMENT}), "
                f"Prometheus at {prometheus.url} scraping every {SCRAPE_S:.0f} s")
            controller = Controller(cluster, PrometheusMetricsProvider(prometheus.url, timeout_s=5), max_workers=0)
            yield Platform(kube, cluster, prometheus, controller, workdir)
    finally:
        cluster.close()
        kube.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def finish_leftovers(env: Platform, model, *, actor, say) -> None:
    """Abort a rollout an interrupted earlier demo left active, so a new one may start."""
    for rollout in model.rollouts.filter(phase__in=ACTIVE):
        say(f"finishing rollout {rollout.pk}, left {rollout.phase} by an interrupted earlier run")
        try:
            services.abort(rollout, actor=actor, reason="left over from an interrupted demo run")
        except MlcpError:
            pass  # already promoting: the controller finishes it instead
        drive(env.controller, rollout, env.kube, timeout_s=30, say=say)


def deploy_first(env: Platform, version, *, actor, say):
    """Ship `version` to the empty Deployment with one 100% step: no stable to compare with."""
    rollout = services.start_rollout(version.model, version, actor=actor, traffic=env.traffic, steps=[100],
                                     analysis=LIVE_ANALYSIS, reason=f"first deploy of {version}")
    return drive(env.controller, rollout, env.kube, timeout_s=ROLLOUT_TIMEOUT_S, say=say)


def canary(env: Platform, version, *, actor, say, fault_error_rate: float = 0.0):
    """Canary `version` beside what the stable Deployment runs, under live traffic, until the controller decides."""
    from registry.models import ModelVersion

    stable_number = stable_version_label(env.kube, NAMESPACE, DEPLOYMENT)
    stable_version = ModelVersion.objects.get(model=version.model, number=int(stable_number))
    # The servers stand in for the Deployments' pods: the stable's version and the canary's.
    stable = serve_version(stable_version, env.workdir, "stable")
    server = None
    try:
        server = serve_version(version, env.workdir, "canary", fault_error_rate=fault_error_rate, seed=version.number)
        fault = f", fault switch on: {fault_error_rate:.0%} of its requests fail" if fault_error_rate else ""
        say(f"mlcp serve: stable {stable_version} at {stable.url}, canary {version} at {server.url}{fault}")
        env.prometheus.scrape([stable.target, server.target])
        time.sleep(2 * SCRAPE_S)  # the servers' zeroed series scraped before any request counts
        return _canary_under_traffic(env, version, stable, server, actor=actor, say=say)
    finally:
        for process in (server, stable):
            if process is not None:
                process.stop()
        env.prometheus.scrape([])


def _canary_under_traffic(env: Platform, version, stable, server, *, actor, say):
    from devtools.reference_models import golden_inputs_and_labels

    inputs, _ = golden_inputs_and_labels()
    split = EmulatorSplit(env.kube, NAMESPACE, DEPLOYMENT)
    traffic = TrafficGenerator(stable.url, server.url, split, inputs, rate_per_s=RATE_PER_S,
                               max_requests=int(RATE_PER_S * (ROLLOUT_TIMEOUT_S + 10)),
                               max_seconds=ROLLOUT_TIMEOUT_S + 10, workers=4, seed=version.number)
    say(f"traffic: {RATE_PER_S:.0f} predictions/s of golden-set digits, split by the pods the controller "
        f"set in the emulator")
    try:
        rollout = services.start_rollout(version.model, version, actor=actor, traffic=env.traffic,
                                         steps=CANARY_STEPS, analysis=LIVE_ANALYSIS,
                                         reason=f"canary of {version}")
        traffic.start()
        return drive(env.controller, rollout, env.kube, timeout_s=ROLLOUT_TIMEOUT_S, say=say)
    finally:
        report = traffic.stop()
        split.close()
        say(f"traffic sent: {report.sent} requests; stable answered {report.count(STABLE, 200)} ok / "
            f"{report.count(STABLE) - report.count(STABLE, 200)} failed, canary {report.count(CANARY, 200)} ok / "
            f"{report.count(CANARY) - report.count(CANARY, 200)} failed")
