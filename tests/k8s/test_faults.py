"""Transient API failures are retried; a dead API is a clear `ClusterUnavailable`."""

import socket

import pytest

from k8s import Cluster, ClusterObjectMissing, ClusterUnavailable, DeploymentWorkloads, build_api_client
from tests.k8s.conftest import DEPLOYMENTS, FAST_RETRY
from tests.k8s.test_workloads import SPEC


def test_transient_500_and_409_are_retried_until_success(kube_emulator, workloads, namespace, stable):
    workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=1)
    before = kube_emulator.mark()
    kube_emulator.fail_next(1, status=500, reason="InternalError", methods=("GET",))
    kube_emulator.fail_next(2, status=409, reason="Conflict", methods=("PATCH",))

    state = workloads.scale(namespace, "resnet-server-canary", 3)

    assert state.replicas == 3
    assert kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server-canary")["spec"]["replicas"] == 3
    assert kube_emulator.pending_faults() == 0
    # Each retry re-read the object before re-applying: GET(500), GET, PATCH(409) x2, GET, PATCH.
    methods = [r[0] for r in kube_emulator.requests(since=before)]
    assert methods == ["GET", "GET", "PATCH", "GET", "PATCH", "GET", "PATCH"]


def test_stale_resource_version_is_reread_and_reapplied(kube_emulator, workloads, namespace, stable):
    workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=1)
    stable_doc = kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server")
    real_read = workloads._read
    calls = []

    def read_then_race(ns, name):
        deployment = real_read(ns, name)
        if name == "resnet-server" and not calls:
            calls.append(name)  # another writer changes the stable between our read and write
            kube_emulator.patch_object(DEPLOYMENTS, ns, name, {"metadata": {"resourceVersion": "race"}})
        return deployment

    workloads._read = read_then_race
    before = kube_emulator.mark()
    workloads.promote_canary(namespace, "resnet-server")

    promoted = kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server")
    assert promoted["metadata"]["labels"]["mlcp.io/version"] == "2"
    assert promoted["spec"]["template"] != stable_doc["spec"]["template"]
    # The first PATCH carried the stale resourceVersion and got 409; the retry re-read and won.
    assert [r[0] for r in kube_emulator.requests(since=before)] == ["GET", "GET", "PATCH", "GET", "GET", "PATCH"]


def test_too_many_failures_give_up_with_cluster_unavailable(kube_emulator, workloads, namespace, stable):
    kube_emulator.fail_next(FAST_RETRY.attempts, status=503, reason="ServiceUnavailable")

    with pytest.raises(ClusterUnavailable) as caught:
        workloads.read_canary(namespace, "resnet-server")
    assert caught.value.context["attempts"] == FAST_RETRY.attempts


def test_not_found_and_invalid_are_not_retried(kube_emulator, workloads, namespace):
    before = kube_emulator.mark()
    with pytest.raises(ClusterObjectMissing):
        workloads.scale(namespace, "no-such-deployment", 2)
    assert len(kube_emulator.requests(since=before)) == 1


def test_api_down_raises_cluster_unavailable(namespace):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    cluster = Cluster(build_api_client(host=f"http://127.0.0.1:{dead_port}"),
                      request_timeout=(1.0, 1.0), retry=FAST_RETRY)

    with pytest.raises(ClusterUnavailable) as caught:
        DeploymentWorkloads(cluster).read_stable(namespace, "resnet-server")

    assert "unreachable" in caught.value.detail
    assert caught.value.code == "cluster_unavailable" and caught.value.http_status == 503
    assert caught.value.context == {"attempts": FAST_RETRY.attempts, "namespace": namespace,
                                    "name": "resnet-server"}
