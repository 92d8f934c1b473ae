"""Traffic routers against the Kubernetes emulator, through the real client."""

import pytest

from k8s import HTTPRouteRouter, ReplicaRatioRouter, RouteState, split_replicas
from tests.k8s.conftest import DEPLOYMENTS, HTTPROUTES
from tests.k8s.test_workloads import SPEC


@pytest.mark.parametrize("weight, stable_replicas, canary_replicas", [
    (0, 10, 0), (1, 9, 1), (10, 9, 1), (25, 7, 3), (50, 5, 5), (99, 1, 9), (100, 0, 10),
])
def test_replica_ratio_router_splits_replicas_by_weight(
        kube_emulator, workloads, namespace, stable, weight, stable_replicas, canary_replicas):
    workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=0)
    router = ReplicaRatioRouter(workloads, namespace, "resnet-server", total_replicas=10)

    state = router.route(weight)

    assert state == RouteState(stable_weight=stable_replicas, canary_weight=canary_replicas)
    assert kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server")["spec"]["replicas"] == stable_replicas
    assert kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server-canary")["spec"]["replicas"] == canary_replicas
    assert router.observe() == state


@pytest.mark.parametrize("total, weight, expected", [
    (1, 50, (1, 1)), (2, 1, (1, 1)), (3, 50, (1, 2)), (4, 10, (3, 1)), (4, 90, (1, 3)),
])
def test_small_totals_keep_one_pod_on_each_side_of_a_partial_split(total, weight, expected):
    assert split_replicas(total, weight) == expected


def httproute(name="resnet", weight_stable=None):
    stable_ref = {"name": "resnet-server", "port": 8080}
    if weight_stable is not None:
        stable_ref["weight"] = weight_stable
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "public-gateway"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/predict"}}],
                 "backendRefs": [stable_ref]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}],
                 "backendRefs": [{"name": "docs", "port": 80}]},
            ],
        },
    }


def create_route(cluster, namespace, body):
    cluster.custom.create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", body)


def test_httproute_router_sets_backend_weights(kube_emulator, cluster, namespace):
    create_route(cluster, namespace, httproute())
    router = HTTPRouteRouter(cluster, namespace, "resnet", "resnet-server", "resnet-server-canary")
    assert router.observe() == RouteState(stable_weight=1, canary_weight=0)

    assert router.route(25) == RouteState(stable_weight=75, canary_weight=25)
    assert router.route(60).canary_percent == 60

    rules = kube_emulator.object(HTTPROUTES, namespace, "resnet")["spec"]["rules"]
    assert rules[0]["backendRefs"] == [
        {"name": "resnet-server", "port": 8080, "weight": 40},
        {"name": "resnet-server-canary", "port": 8080, "weight": 60},
    ]
    assert rules[1]["backendRefs"] == [{"name": "docs", "port": 80}]  # other services untouched

    versions = kube_emulator.versions(HTTPROUTES, namespace, "resnet")
    assert router.route(60) == RouteState(stable_weight=40, canary_weight=60)
    assert kube_emulator.versions(HTTPROUTES, namespace, "resnet") == versions  # no write


def test_rollback_scales_canary_to_zero_and_routes_all_to_stable(kube_emulator, cluster, workloads, namespace, stable):
    workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=1)
    create_route(cluster, namespace, httproute())
    by_replicas = ReplicaRatioRouter(workloads, namespace, "resnet-server", total_replicas=4)
    by_route = HTTPRouteRouter(cluster, namespace, "resnet", "resnet-server", "resnet-server-canary")
    by_replicas.route(50)
    by_route.route(50)

    # Rollback: all traffic to stable first, then no canary pods at all.
    by_route.route(0)
    by_replicas.route(0)
    workloads.scale_canary_to_zero(namespace, "resnet-server")

    assert by_route.observe() == RouteState(stable_weight=100, canary_weight=0)
    assert by_replicas.observe() == RouteState(stable_weight=4, canary_weight=0)
    assert kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server-canary")["spec"]["replicas"] == 0
    assert kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server")["spec"]["replicas"] == 4


def test_a_router_is_built_from_its_target_with_the_kinds_defaults():
    from k8s import ROUTER_KINDS, RouterTarget, build_router, complete_target

    target = complete_target(RouterTarget("httproute", "ml", "resnet-server", replicas=2))
    assert (target.route, target.stable_service, target.canary_service) == (
        "resnet-server", "resnet-server", "resnet-server-canary")
    assert set(ROUTER_KINDS) == {"replica_ratio", "httproute"}
    by_route = build_router(target, None)
    assert (by_route.expected(25), by_route.canary_replicas(25), by_route.canary_replicas(0)) == (
        RouteState(75, 25), 2, 0)
    by_replicas = build_router(RouterTarget("replica_ratio", "ml", "resnet-server", replicas=4), None)
    assert (by_replicas.expected(25), by_replicas.canary_replicas(25)) == (RouteState(3, 1), 1)


def test_an_unknown_router_kind_is_invalid_input():
    from controlplane.errors import InvalidInput
    from k8s import RouterTarget, complete_target

    with pytest.raises(InvalidInput) as raised:
        complete_target(RouterTarget("istio", "ml", "resnet-server", replicas=4))
    assert raised.value.code == "invalid_traffic"


def test_httproute_promotion_moves_traffic_off_the_canary_once_the_stable_runs_the_new_version(
        kube_emulator, cluster, workloads, namespace, stable):
    from k8s import RouterTarget, build_router

    workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=1)
    create_route(cluster, namespace, httproute())
    router = build_router(RouterTarget("httproute", namespace, "resnet-server", replicas=1, route="resnet"), workloads)
    router.route(50)

    assert router.promote(SPEC.version) is False  # the stable is still rolling out the canary's template
    assert router.observe() == RouteState(50, 50)  # traffic stays split while the stable is not ready
    kube_emulator.settle_deployments(namespace, "resnet-server")
    assert router.promote(SPEC.version) is True
    assert router.observe() == RouteState(100, 0)
    assert kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server-canary")["spec"]["replicas"] == 0
