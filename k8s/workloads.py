"""The Deployment workload adapter: stable and canary Deployments of a model server.

Every method is idempotent and level-triggered ("ensure", never "add"): it reads
what the cluster has, writes only the difference, and is safe to repeat after a
crash at any point. Errors are `k8s.errors`, never `kubernetes` exceptions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException

from controlplane.errors import InvalidInput, MlcpError
from k8s.canary import (DIGEST_ANNOTATION, MODEL_LABEL, ROLLOUT_ANNOTATION, TEMPLATE_HASH_ANNOTATION,
                        VERSION_LABEL, CanarySpec, build_canary, canary_name, promoted_template,
                        template_hash)
from k8s.client import Cluster
from k8s.errors import CanaryWorkloadMissing, ClusterObjectMissing, StableWorkloadMissing
from k8s.patches import JSON_PATCH, guarded, set_map_entries

# Placeholder: the image that carries the `mlcp` CLI for the fetch init container.
DEFAULT_FETCHER_IMAGE = "ghcr.io/example/mlcp:0.1.0"


@dataclass(frozen=True)
class WorkloadState:
    """What the cluster says about one Deployment."""

    namespace: str
    name: str
    replicas: int  # desired (spec)
    ready_replicas: int
    updated_replicas: int
    total_replicas: int  # pods of any template still running
    generation: int | None
    observed_generation: int | None
    model: str | None
    version: str | None
    rollout_id: str | None

    @property
    def ready(self) -> bool:
        """The Deployment controller saw the latest spec and every desired pod is
        updated and ready, with no pod of an older template left."""
        seen = (self.generation is None
                or (self.observed_generation or 0) >= self.generation)
        return (seen and self.updated_replicas >= self.replicas
                and self.ready_replicas >= self.replicas and self.total_replicas <= self.replicas)

    @classmethod
    def of(cls, deployment: dict) -> "WorkloadState":
        meta, status = deployment["metadata"], deployment.get("status") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        return cls(
            namespace=meta.get("namespace", ""), name=meta["name"],
            replicas=deployment["spec"].get("replicas", 1),
            ready_replicas=status.get("readyReplicas", 0),
            updated_replicas=status.get("updatedReplicas", 0),
            total_replicas=status.get("replicas", 0),
            generation=meta.get("generation"),
            observed_generation=status.get("observedGeneration"),
            model=labels.get(MODEL_LABEL), version=labels.get(VERSION_LABEL),
            rollout_id=annotations.get(ROLLOUT_ANNOTATION),
        )


class DeploymentWorkloads:
    """Stable and canary Deployments of model servers, through one `Cluster`."""

    def __init__(self, cluster: Cluster, *, fetcher_image: str = DEFAULT_FETCHER_IMAGE) -> None:
        self.cluster = cluster
        self.fetcher_image = fetcher_image

    def read_stable(self, namespace: str, name: str) -> WorkloadState:
        """The stable Deployment's state; `StableWorkloadMissing` if it does not exist."""
        return WorkloadState.of(self.cluster.call(
            f"read deployment {namespace}/{name}", lambda: self._read_stable(namespace, name),
            namespace=namespace, name=name))

    def read_canary(self, namespace: str, stable_name: str) -> WorkloadState | None:
        """The canary Deployment's state, or None if there is none."""
        name = canary_name(stable_name)
        canary = self.cluster.call(f"read deployment {namespace}/{name}",
                                   lambda: self._read_or_none(namespace, name),
                                   namespace=namespace, name=name)
        return WorkloadState.of(canary) if canary else None

    def ensure_canary(self, namespace: str, stable_name: str, spec: CanarySpec,
                      replicas: int) -> WorkloadState:
        """Ensure `<stable>-canary` runs `spec`'s model with `replicas` pods.

        Created from the stable Deployment's pod template on first call, brought
        back in line if anything drifted, and left untouched if nothing did.
        """
        _check_replicas(replicas)
        name = canary_name(stable_name)

        def ensure() -> dict:
            desired = build_canary(self._read_stable(namespace, stable_name), spec, replicas,
                                   self.fetcher_image)
            current = self._read_or_none(namespace, name)
            if current is None:
                return json.loads(self.cluster.apps.create_namespaced_deployment(
                    namespace, desired, _preload_content=False,
                    _request_timeout=self.cluster.request_timeout).data)
            ops = _canary_drift(current, desired)
            return self._json_patch(namespace, name, ops) if ops else current

        # A 409 (created or changed concurrently) re-runs the whole read-compare-write.
        return WorkloadState.of(self.cluster.call(
            f"ensure canary deployment {namespace}/{name}", ensure, namespace=namespace, name=name))

    def canary_ready(self, namespace: str, stable_name: str) -> bool:
        """Whether the canary exists and all its desired pods run its latest template."""
        canary = self.read_canary(namespace, stable_name)
        return canary is not None and canary.ready

    def scale(self, namespace: str, name: str, replicas: int) -> WorkloadState:
        """Ensure Deployment `namespace/name` wants exactly `replicas` pods."""
        _check_replicas(replicas)

        def ensure() -> dict:
            current = self._read(namespace, name)
            if current["spec"].get("replicas") == replicas:
                return current
            return self._json_patch(namespace, name, [
                {"op": "add", "path": "/spec/replicas", "value": replicas}])

        return WorkloadState.of(self.cluster.call(
            f"scale deployment {namespace}/{name} to {replicas}", ensure,
            namespace=namespace, name=name))

    def scale_canary_to_zero(self, namespace: str, stable_name: str) -> WorkloadState | None:
        """Ensure the canary runs no pods (kept, for its history); None if there is none."""
        try:
            return self.scale(namespace, canary_name(stable_name), 0)
        except ClusterObjectMissing:
            return None

    def promote_canary(self, namespace: str, stable_name: str,
                       replicas: int | None = None) -> bool:
        """Make the canary's pod template and version the stable's; True once done.

        Step one gives the stable Deployment the canary's template, model and
        version labels, and `replicas` pods (default: the larger of both
        Deployments, so capacity never drops). The canary is scaled to zero only
        once the stable is ready on the new template; until then this returns
        False and the caller calls again on its next tick.
        """
        stable_state = self._promote_stable(namespace, stable_name, replicas)
        if not stable_state.ready:
            return False
        self.scale_canary_to_zero(namespace, stable_name)
        return True

    def _promote_stable(self, namespace: str, stable_name: str,
                        replicas: int | None) -> WorkloadState:
        name = canary_name(stable_name)

        def ensure() -> dict:
            canary = self._read_or_none(namespace, name)
            if canary is None:
                raise CanaryWorkloadMissing(
                    f"No canary Deployment {namespace}/{name} to promote",
                    namespace=namespace, name=name)
            stable = self._read_stable(namespace, stable_name)
            template = promoted_template(canary["spec"]["template"], stable)
            wanted_replicas = replicas if replicas is not None else max(
                stable["spec"].get("replicas", 1), canary["spec"].get("replicas", 1))
            canary_meta = canary["metadata"]
            ops = set_map_entries("/metadata/labels", stable["metadata"].get("labels"), {
                MODEL_LABEL: canary_meta["labels"][MODEL_LABEL],
                VERSION_LABEL: canary_meta["labels"][VERSION_LABEL]})
            ops += set_map_entries("/metadata/annotations", stable["metadata"].get("annotations"), {
                ROLLOUT_ANNOTATION: canary_meta["annotations"].get(ROLLOUT_ANNOTATION, ""),
                DIGEST_ANNOTATION: canary_meta["annotations"].get(DIGEST_ANNOTATION, ""),
                TEMPLATE_HASH_ANNOTATION: template_hash(template)})
            stable_hash = (stable["metadata"].get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION)
            if stable_hash != template_hash(template):
                ops.append({"op": "replace", "path": "/spec/template", "value": template})
            if stable["spec"].get("replicas") != wanted_replicas:
                ops.append({"op": "add", "path": "/spec/replicas", "value": wanted_replicas})
            if not ops:
                return stable
            return self._json_patch(namespace, stable_name,
                                    guarded(ops, stable["metadata"].get("resourceVersion")))

        return WorkloadState.of(self.cluster.call(
            f"promote canary {namespace}/{name} to stable", ensure,
            namespace=namespace, name=stable_name))

    def list_deployments(self, namespace: str, *, page_size: int = 500) -> dict[str, dict]:
        """Every Deployment in `namespace` by name, read in pages of `page_size`, each page with retries."""
        found: dict[str, dict] = {}
        token = None
        while True:
            page = self.cluster.call(
                f"list deployments in {namespace}",
                lambda token=token: self._list_page(namespace, page_size, token), namespace=namespace)
            for item in page.get("items") or ():
                found[item["metadata"]["name"]] = item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return found

    def listed(self, namespaces) -> "ListedDeployments":
        """A read-only view of the Deployments of `namespaces`, one list call (per page) each."""
        return ListedDeployments(self, namespaces)

    # --- raw reads and writes (each inside the caller's retry loop) --------

    def _list_page(self, namespace: str, limit: int, token: str | None) -> dict:
        kwargs = {"limit": limit, "_continue": token} if token else {"limit": limit}
        response = self.cluster.apps.list_namespaced_deployment(
            namespace, _preload_content=False, _request_timeout=self.cluster.request_timeout, **kwargs)
        return json.loads(response.data)

    def _read(self, namespace: str, name: str) -> dict:
        # Raw JSON, not the client's models: templates are copied verbatim
        # between Deployments, so no field the client does not know may be lost.
        response = self.cluster.apps.read_namespaced_deployment(
            name, namespace, _preload_content=False, _request_timeout=self.cluster.request_timeout)
        return json.loads(response.data)

    def _read_or_none(self, namespace: str, name: str) -> dict | None:
        try:
            return self._read(namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _read_stable(self, namespace: str, name: str) -> dict:
        stable = self._read_or_none(namespace, name)
        if stable is None:
            raise _stable_missing(namespace, name)
        return stable

    def _json_patch(self, namespace: str, name: str, ops: list[dict]) -> dict:
        response = self.cluster.apps.patch_namespaced_deployment(
            name, namespace, ops, _content_type=JSON_PATCH, _preload_content=False,
            _request_timeout=self.cluster.request_timeout)
        return json.loads(response.data)


def _stable_missing(namespace: str, name: str) -> StableWorkloadMissing:
    return StableWorkloadMissing(f"Stable Deployment {namespace}/{name} does not exist: create the model "
                                 "server's Deployment before starting a rollout", namespace=namespace, deployment=name)


class ListedDeployments:
    """Stable and canary reads answered from one listing per namespace, taken when it is made.

    Stands in for `DeploymentWorkloads` where a controller tick only observes
    (`read_stable`, `read_canary`, a router's `observe`), so a tick costs one
    list per namespace instead of two or three GETs per rollout. A namespace
    whose listing failed raises that error from each read in it, as the GET
    would have. Writes go through `DeploymentWorkloads`, which reads afresh.
    """

    def __init__(self, workloads: DeploymentWorkloads, namespaces) -> None:
        self.cluster = workloads.cluster
        self._deployments: dict[tuple[str, str], dict] = {}
        self._failed: dict[str, Exception] = {}
        for namespace in sorted(set(namespaces)):
            try:
                for name, item in workloads.list_deployments(namespace).items():
                    self._deployments[namespace, name] = item
            except MlcpError as exc:
                self._failed[namespace] = exc

    def read_stable(self, namespace: str, name: str) -> WorkloadState:
        stable = self._get(namespace, name)
        if stable is None:
            raise _stable_missing(namespace, name)
        return WorkloadState.of(stable)

    def read_canary(self, namespace: str, stable_name: str) -> WorkloadState | None:
        canary = self._get(namespace, canary_name(stable_name))
        return WorkloadState.of(canary) if canary else None

    def _get(self, namespace: str, name: str) -> dict | None:
        if namespace in self._failed:
            raise self._failed[namespace]
        return self._deployments.get((namespace, name))


def _canary_drift(current: dict, desired: dict) -> list[dict]:
    """JSON-patch ops that bring an existing canary to `desired`; [] if none needed."""
    meta, want = current["metadata"], desired["metadata"]
    ops = set_map_entries("/metadata/labels", meta.get("labels"), want["labels"])
    ops += set_map_entries("/metadata/annotations", meta.get("annotations"), want["annotations"])
    if (meta.get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION) != \
            want["annotations"][TEMPLATE_HASH_ANNOTATION]:
        ops.append({"op": "replace", "path": "/spec/template", "value": desired["spec"]["template"]})
    if current["spec"].get("replicas") != desired["spec"]["replicas"]:
        ops.append({"op": "add", "path": "/spec/replicas", "value": desired["spec"]["replicas"]})
    return guarded(ops, meta.get("resourceVersion"))


def _check_replicas(replicas: int) -> None:
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise InvalidInput(f"replicas must be a whole number >= 0, not {replicas!r}",
                           replicas=replicas)
