"""A tick's Deployment reads from one list per namespace: the same states as GETs, with the same errors."""

import uuid

import pytest

from k8s import Cluster, DeploymentWorkloads, RetryPolicy, StableWorkloadMissing, build_router, RouterTarget
from k8s.errors import ClusterUnavailable


def _deployment(name, replicas):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "s", "image": "x"}]}}}}


@pytest.fixture
def cluster(kube_emulator):
    cluster = Cluster(kube_emulator.api_client(), retry=RetryPolicy(attempts=2, base_delay_s=0.01))
    yield cluster
    cluster.close()


def test_listed_reads_match_gets_from_one_list_per_namespace(kube_emulator, cluster):
    namespace = f"l-{uuid.uuid4().hex[:8]}"
    for name, replicas in (("a", 3), ("a-canary", 1), ("b", 4)):
        cluster.apps.create_namespaced_deployment(namespace, _deployment(name, replicas))
    workloads = DeploymentWorkloads(cluster)
    mark = kube_emulator.mark()
    listed = workloads.listed([namespace, namespace])
    requests = kube_emulator.requests(since=mark)
    assert [(method, plural, name) for method, _, plural, _, name, _ in requests] == [("GET", "deployments", None)]
    assert listed.read_stable(namespace, "a") == workloads.read_stable(namespace, "a")
    assert listed.read_canary(namespace, "a") == workloads.read_canary(namespace, "a")
    assert listed.read_canary(namespace, "b") is None
    target = RouterTarget.from_json({"namespace": namespace, "deployment": "a", "replicas": 4})
    assert build_router(target, listed).observe() == build_router(target, workloads).observe()
    with pytest.raises(StableWorkloadMissing):
        listed.read_stable(namespace, "missing")


def test_a_failed_listing_fails_every_read_in_its_namespace_only(kube_emulator, cluster):
    suffix = uuid.uuid4().hex[:8]
    broken, fine = f"l-a-{suffix}", f"l-b-{suffix}"  # listed in this order
    cluster.apps.create_namespaced_deployment(fine, _deployment("c", 2))
    kube_emulator.fail_next(2, status=503, reason="ServiceUnavailable")  # both attempts of the first listing
    listed = DeploymentWorkloads(cluster).listed([broken, fine])
    with pytest.raises(ClusterUnavailable):
        listed.read_stable(broken, "anything")
    assert listed.read_stable(fine, "c").replicas == 2
