"""Fixtures for the Kubernetes adapter: one emulator per session, a namespace per test."""

import uuid

import pytest

from devtools.embedded.kube import start_kube_emulator
from k8s import Cluster, DeploymentWorkloads, RetryPolicy

# Real backoff shape, test-sized delays: a retried call costs milliseconds.
FAST_RETRY = RetryPolicy(attempts=5, base_delay_s=0.01, max_delay_s=0.05)
DEPLOYMENTS = "apps/v1/deployments"
HTTPROUTES = "gateway.networking.k8s.io/v1/httproutes"


@pytest.fixture(scope="session")
def kube_emulator():
    emulator = start_kube_emulator()
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def _no_leftover_faults(request):
    yield
    if "kube_emulator" in request.fixturenames:
        request.getfixturevalue("kube_emulator").clear_faults()


@pytest.fixture
def cluster(kube_emulator):
    # Generous: the emulator shares this process's CPU, and no test here waits for a timeout to fire.
    cluster = Cluster(kube_emulator.api_client(), request_timeout=(10.0, 30.0), retry=FAST_RETRY)
    yield cluster
    cluster.close()


@pytest.fixture
def namespace():
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def workloads(cluster):
    return DeploymentWorkloads(cluster)


def model_server(name="resnet-server", replicas=4, version="1"):
    """A stable model-server Deployment as a user would apply it."""
    labels = {"app.kubernetes.io/name": name, "mlcp.io/track": "stable"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name,
                                              "mlcp.io/model": "resnet", "mlcp.io/version": version},
                     "uid": "0b6c3f52-1d0e-4d9b-9f7e-4b1c2d3e4f50"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {**labels, "mlcp.io/model": "resnet", "mlcp.io/version": version}},
                "spec": {"containers": [
                    {"name": "server", "image": "ghcr.io/example/model-server:1.4",
                     "ports": [{"containerPort": 8080}],
                     "env": [{"name": "LOG_LEVEL", "value": "info"}]},
                    {"name": "log-shipper", "image": "ghcr.io/example/shipper:2"},
                ]},
            },
        },
    }


@pytest.fixture
def stable(cluster, namespace):
    """The stable Deployment `resnet-server` (4 replicas), created through the API."""
    body = model_server()
    cluster.apps.create_namespaced_deployment(namespace, body)
    return body

