"""Traffic routers: how much of a model's traffic its canary gets.

`TrafficRouter` is the one interface the rollout controller uses (observe,
the state a weight should produce, apply a weight, promote); `build_router`
makes one from a `RouterTarget`, and `ROUTER_KINDS` is every kind there is.
`ReplicaRatioRouter` works on any cluster (the Service spreads requests over
stable and canary pods), `HTTPRouteRouter` sets Gateway API backend weights.
Both report the weights the cluster actually holds, so the controller can
compare them with what the database wants on every tick. A new router (Istio,
SMI, NGINX) is a class here and a line in `ROUTER_KINDS`: the controller, the
rollout API's `router` choices and the stored target (`RouterTarget.from_json`)
all read them from here, and none of them names a router kind.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from typing import Protocol

from kubernetes.client.exceptions import ApiException

from controlplane.errors import InvalidInput
from k8s.canary import canary_name
from k8s.client import Cluster
from k8s.errors import CanaryWorkloadMissing, RouteMissing
from k8s.patches import JSON_PATCH, guarded
from k8s.workloads import DeploymentWorkloads

HTTPROUTE_GROUP = "gateway.networking.k8s.io"
HTTPROUTE_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"
_DEFAULT_BACKEND_WEIGHT = 1  # Gateway API's default for a backendRef without one


@dataclass(frozen=True)
class RouteState:
    """The stable and canary weights found in the cluster (replicas or route weights)."""

    stable_weight: int
    canary_weight: int

    @property
    def canary_percent(self) -> int:
        """The canary's share of traffic, rounded to a whole percent."""
        total = self.stable_weight + self.canary_weight
        return round(100 * self.canary_weight / total) if total else 0


DEFAULT_ROUTER_KIND = "replica_ratio"


@dataclass(frozen=True)
class RouterTarget:
    """Where a model's Deployments are and the router's own settings, as plain values.

    Stored as JSON on the model (`rollout_target`) and on each rollout
    (`traffic`), where the kind is spelled `router`.
    """

    kind: str
    namespace: str
    deployment: str
    replicas: int  # replica ratio: pods in all; HTTPRoute: the canary's pods
    route: str = ""
    stable_service: str = ""
    canary_service: str = ""

    @classmethod
    def from_json(cls, raw: dict) -> "RouterTarget":
        """A complete target (the router's defaults filled in) from its JSON; InvalidInput if it is not one."""
        if not isinstance(raw, dict):
            raise InvalidInput("traffic must be an object", code="invalid_traffic")
        raw = {k: v for k, v in raw.items() if v not in (None, "")}
        for field_name in ("namespace", "deployment", "route", "stable_service", "canary_service"):
            if field_name in raw and not isinstance(raw[field_name], str):
                raise InvalidInput(f"traffic.{field_name} must be a string", code="invalid_traffic")
        for field_name in ("namespace", "deployment"):
            if field_name not in raw:
                raise InvalidInput(f"traffic.{field_name} is required", code="invalid_traffic")
        replicas = raw.get("replicas", 4)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise InvalidInput(f"traffic.replicas is a whole number >= 1, not {replicas!r}", code="invalid_traffic")
        return complete_target(cls(
            kind=str(raw.get("router", DEFAULT_ROUTER_KIND)), namespace=raw["namespace"],
            deployment=raw["deployment"], replicas=replicas, route=raw.get("route", ""),
            stable_service=raw.get("stable_service", ""), canary_service=raw.get("canary_service", "")))

    def to_json(self) -> dict:
        return {"router": self.kind, "namespace": self.namespace, "deployment": self.deployment,
                "replicas": self.replicas, "route": self.route, "stable_service": self.stable_service,
                "canary_service": self.canary_service}


class TrafficRouter(Protocol):
    """Moves a model's traffic between its stable and canary workloads."""

    def expected(self, canary_percent: int) -> RouteState:
        """What `observe()` returns once the canary has `canary_percent` (0-100) of traffic. No I/O."""

    def canary_replicas(self, canary_percent: int) -> int:
        """The canary Deployment's pods at `canary_percent`. No I/O."""

    def route(self, canary_percent: int) -> RouteState:
        """Ensure the canary gets `canary_percent` (0-100) of traffic; returns what the cluster holds."""

    def observe(self) -> RouteState:
        """The split the cluster holds now, without changing it."""

    def promote(self, new_version: str) -> bool:
        """Make the stable run the canary's version and take all traffic; True once done (call again until)."""


def split_replicas(total: int, canary_percent: int) -> tuple[int, int]:
    """(stable, canary) replicas for `total` pods and a canary weight.

    Rounds half up; a weight above 0 gives the canary at least one pod and a
    weight below 100 leaves the stable at least one, so with `total` = 1 and a
    weight strictly between 0 and 100 both run one pod (two in all).
    """
    _check_percent(canary_percent)
    if total < 1:
        raise InvalidInput(f"total replicas must be at least 1, not {total}", total=total)
    if canary_percent == 0:
        return total, 0
    if canary_percent == 100:
        return 0, total
    if total == 1:
        return 1, 1
    canary = min(max(1, (total * canary_percent + 50) // 100), total - 1)
    return total - canary, canary


class ReplicaRatioRouter:
    """Splits `total_replicas` pods between the stable and canary Deployments.

    Needs a Service that selects both Deployments' pods (for example by
    `app.kubernetes.io/name`, without the `mlcp.io/track` label).
    """

    def __init__(self, workloads: DeploymentWorkloads, namespace: str, stable_name: str,
                 total_replicas: int) -> None:
        self.workloads = workloads
        self.namespace = namespace
        self.stable_name = stable_name
        self.total_replicas = total_replicas

    @classmethod
    def for_target(cls, target: RouterTarget, workloads: DeploymentWorkloads | None) -> "ReplicaRatioRouter":
        return cls(workloads, target.namespace, target.deployment, target.replicas)

    @staticmethod
    def completed(target: RouterTarget) -> RouterTarget:
        return target

    def expected(self, canary_percent: int) -> RouteState:
        return RouteState(*split_replicas(self.total_replicas, canary_percent))

    def canary_replicas(self, canary_percent: int) -> int:
        return split_replicas(self.total_replicas, canary_percent)[1]

    def promote(self, new_version: str) -> bool:
        # The stable takes the canary's template and every pod of the ratio.
        return self.workloads.promote_canary(self.namespace, self.stable_name, self.total_replicas)

    def route(self, canary_percent: int) -> RouteState:
        stable, canary = split_replicas(self.total_replicas, canary_percent)
        current_canary = self.workloads.read_canary(self.namespace, self.stable_name)
        if canary > 0 and current_canary is None:
            raise CanaryWorkloadMissing(
                f"No canary Deployment {self.namespace}/{canary_name(self.stable_name)} "
                "to route traffic to: ensure the canary first",
                namespace=self.namespace, name=canary_name(self.stable_name))

        def scale_stable():
            self.workloads.scale(self.namespace, self.stable_name, stable)

        def scale_canary():
            if canary:
                self.workloads.scale(self.namespace, canary_name(self.stable_name), canary)
            else:  # also when there is no canary at all
                self.workloads.scale_canary_to_zero(self.namespace, self.stable_name)

        # Grow the side gaining traffic before shrinking the other, so serving
        # capacity never dips while the split moves.
        gaining_canary = current_canary is None or canary >= current_canary.replicas
        for step in (scale_canary, scale_stable) if gaining_canary else (scale_stable, scale_canary):
            step()
        return self.observe()

    def observe(self) -> RouteState:
        stable = self.workloads.read_stable(self.namespace, self.stable_name)
        canary = self.workloads.read_canary(self.namespace, self.stable_name)
        return RouteState(stable.replicas, canary.replicas if canary else 0)


class HTTPRouteRouter:
    """Sets the weights of the stable and canary Services in a Gateway API HTTPRoute.

    Every rule that sends traffic to the stable Service gets both weights; a
    rule without a canary backendRef gets one, copied from the stable's.
    """

    def __init__(self, cluster: Cluster, namespace: str, route_name: str, stable_service: str,
                 canary_service: str, *, workloads: DeploymentWorkloads | None = None, stable_name: str = "",
                 canary_pods: int = 1) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.route_name = route_name
        self.stable_service = stable_service
        self.canary_service = canary_service
        self.workloads = workloads
        self.stable_name = stable_name
        self.canary_pods = canary_pods

    @classmethod
    def for_target(cls, target: RouterTarget, workloads: DeploymentWorkloads | None) -> "HTTPRouteRouter":
        target = cls.completed(target)
        return cls(workloads.cluster if workloads else None, target.namespace, target.route, target.stable_service, target.canary_service,
                   workloads=workloads, stable_name=target.deployment, canary_pods=target.replicas)

    @staticmethod
    def completed(target: RouterTarget) -> RouterTarget:
        """The target with the route and Services named after the Deployment where left out."""
        return replace(target, route=target.route or target.deployment,
                       stable_service=target.stable_service or target.deployment,
                       canary_service=target.canary_service or f"{target.deployment}-canary")

    def expected(self, canary_percent: int) -> RouteState:
        return RouteState(100 - canary_percent, canary_percent)

    def canary_replicas(self, canary_percent: int) -> int:
        return self.canary_pods if canary_percent > 0 else 0

    def promote(self, new_version: str) -> bool:
        stable = self.workloads.read_stable(self.namespace, self.stable_name)
        if stable.version == new_version and stable.ready:
            self.route(0)  # the stable runs the new version: take traffic off the canary first
        if not self.workloads.promote_canary(self.namespace, self.stable_name, None):
            return False
        self.route(0)
        return True

    def route(self, canary_percent: int) -> RouteState:
        _check_percent(canary_percent)

        def ensure() -> dict:
            route = self._read()
            ops = self._weight_ops(route, 100 - canary_percent, canary_percent)
            if not ops:
                return route
            return self._patch(guarded(ops, route["metadata"].get("resourceVersion")))

        return self._state(self.cluster.call(
            f"set weights on httproute {self.namespace}/{self.route_name}", ensure,
            namespace=self.namespace, name=self.route_name))

    def observe(self) -> RouteState:
        return self._state(self.cluster.call(
            f"read httproute {self.namespace}/{self.route_name}", self._read,
            namespace=self.namespace, name=self.route_name))

    def _weight_ops(self, route: dict, stable_weight: int, canary_weight: int) -> list[dict]:
        ops: list[dict] = []
        for rule_index, refs in self._rules_with_stable(route):
            stable_index = self._find(refs, self.stable_service)
            canary_index = self._find(refs, self.canary_service)
            base = f"/spec/rules/{rule_index}/backendRefs"
            if refs[stable_index].get("weight", _DEFAULT_BACKEND_WEIGHT) != stable_weight:
                ops.append({"op": "add", "path": f"{base}/{stable_index}/weight",
                            "value": stable_weight})
            if canary_index is None:
                canary_ref = copy.deepcopy(refs[stable_index])
                canary_ref.update(name=self.canary_service, weight=canary_weight)
                ops.append({"op": "add", "path": f"{base}/-", "value": canary_ref})
            elif refs[canary_index].get("weight", _DEFAULT_BACKEND_WEIGHT) != canary_weight:
                ops.append({"op": "add", "path": f"{base}/{canary_index}/weight",
                            "value": canary_weight})
        return ops

    def _state(self, route: dict) -> RouteState:
        _, refs = self._rules_with_stable(route)[0]
        stable = refs[self._find(refs, self.stable_service)]
        canary_index = self._find(refs, self.canary_service)
        canary_weight = 0 if canary_index is None else \
            refs[canary_index].get("weight", _DEFAULT_BACKEND_WEIGHT)
        return RouteState(stable.get("weight", _DEFAULT_BACKEND_WEIGHT), canary_weight)

    def _rules_with_stable(self, route: dict) -> list[tuple[int, list[dict]]]:
        rules = [(index, rule.get("backendRefs") or [])
                 for index, rule in enumerate((route.get("spec") or {}).get("rules") or [])]
        found = [(index, refs) for index, refs in rules
                 if self._find(refs, self.stable_service) is not None]
        if not found:
            raise RouteMissing(
                f"HTTPRoute {self.namespace}/{self.route_name} has no rule with a backendRef "
                f"to Service {self.stable_service}", namespace=self.namespace,
                name=self.route_name, service=self.stable_service)
        return found

    @staticmethod
    def _find(refs: list[dict], service: str) -> int | None:
        for index, ref in enumerate(refs):
            if (ref.get("name") == service and ref.get("kind", "Service") == "Service"
                    and ref.get("group", "") == ""):
                return index
        return None

    def _read(self) -> dict:
        try:
            response = self.cluster.custom.get_namespaced_custom_object(
                HTTPROUTE_GROUP, HTTPROUTE_VERSION, self.namespace, HTTPROUTE_PLURAL,
                self.route_name, _preload_content=False,
                _request_timeout=self.cluster.request_timeout)
        except ApiException as exc:
            if exc.status == 404:
                raise RouteMissing(
                    f"HTTPRoute {self.namespace}/{self.route_name} does not exist",
                    namespace=self.namespace, name=self.route_name) from exc
            raise
        return json.loads(response.data)

    def _patch(self, ops: list[dict]) -> dict:
        response = self.cluster.custom.patch_namespaced_custom_object(
            HTTPROUTE_GROUP, HTTPROUTE_VERSION, self.namespace, HTTPROUTE_PLURAL, self.route_name,
            ops, _content_type=JSON_PATCH, _preload_content=False,
            _request_timeout=self.cluster.request_timeout)
        return json.loads(response.data)


ROUTER_KINDS: dict[str, type] = {
    "replica_ratio": ReplicaRatioRouter,
    "httproute": HTTPRouteRouter,
}


def complete_target(target: RouterTarget) -> RouterTarget:
    """`target` with its router's defaults filled in; InvalidInput for an unknown kind."""
    return _router_class(target.kind).completed(target)


def build_router(target: RouterTarget, workloads: DeploymentWorkloads | None) -> TrafficRouter:
    """The router of `target.kind` for that model's Deployments.

    Building one does no I/O; without `workloads` only its pure methods
    (`expected`, `canary_replicas`) may be called, as the controller's plan does.
    """
    return _router_class(target.kind).for_target(target, workloads)


def _router_class(kind: str) -> type:
    if kind not in ROUTER_KINDS:
        raise InvalidInput(f"router must be one of {sorted(ROUTER_KINDS)}, not {kind!r}", code="invalid_traffic")
    return ROUTER_KINDS[kind]


def _check_percent(canary_percent: int) -> None:
    if not isinstance(canary_percent, int) or isinstance(canary_percent, bool) \
            or not 0 <= canary_percent <= 100:
        raise InvalidInput(f"canary weight must be a whole percent 0-100, not {canary_percent!r}",
                           canary_percent=canary_percent)
