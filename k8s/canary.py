"""The shape of a canary Deployment, as pure functions of the stable one.

No I/O here: `build_canary` derives the canary from the stable Deployment and a
`CanarySpec`, `promoted_template` derives the stable's next pod template from the
canary's. `k8s.workloads` reads and writes them; these functions are tested alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass

from controlplane.errors import InvalidInput

TRACK_LABEL = "mlcp.io/track"
MODEL_LABEL = "mlcp.io/model"
VERSION_LABEL = "mlcp.io/version"
ROLLOUT_ANNOTATION = "mlcp.io/rollout-id"
STABLE_ANNOTATION = "mlcp.io/stable"
DIGEST_ANNOTATION = "mlcp.io/model-digest"
TEMPLATE_HASH_ANNOTATION = "mlcp.io/template-hash"
# Set on the stable Deployment when the model server is not its first container.
MODEL_CONTAINER_ANNOTATION = "mlcp.io/model-container"

MODEL_VOLUME = "mlcp-model"
MODEL_DIR = "/models"
MODEL_PATH = f"{MODEL_DIR}/model.onnx"
FETCH_CONTAINER = "mlcp-fetch-model"
MODEL_ENV = ("MLCP_MODEL_URI", "MLCP_MODEL_DIGEST", "MLCP_MODEL_SIGNATURE_URI", "MLCP_MODEL_PATH")

_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class CanarySpec:
    """The model version a canary serves, and the rollout that asked for it."""

    model: str
    version: str
    uri: str
    digest: str
    signature_uri: str
    rollout_id: str

    def __post_init__(self) -> None:
        for field_name in ("model", "version"):
            value = str(getattr(self, field_name))
            if not value or not _LABEL_VALUE.match(value):
                raise InvalidInput(
                    f"{field_name} {value!r} cannot be a Kubernetes label value "
                    "(at most 63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)",
                    field=field_name)
            object.__setattr__(self, field_name, value)
        for field_name in ("uri", "digest", "signature_uri", "rollout_id"):
            if not str(getattr(self, field_name) or ""):
                raise InvalidInput(f"{field_name} is required for a canary", field=field_name)


def canary_name(stable_name: str) -> str:
    """The canary Deployment's name for a stable Deployment."""
    return f"{stable_name}-canary"


def template_hash(template: dict) -> str:
    """A short, stable digest of a pod template, recorded to skip no-op writes.

    Comparing templates field by field would always differ on a real cluster,
    where the API server fills in defaults after we write.
    """
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_canary(stable: dict, spec: CanarySpec, replicas: int, fetcher_image: str) -> dict:
    """The canary Deployment for `spec`, from the stable Deployment `stable` (a dict)."""
    meta, stable_spec = stable["metadata"], stable["spec"]
    identity = {TRACK_LABEL: "canary", MODEL_LABEL: spec.model, VERSION_LABEL: spec.version}

    template = copy.deepcopy(stable_spec["template"])
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**template_meta.get("labels", {}), **identity}
    template_meta["annotations"] = {**template_meta.get("annotations", {}),
                                    ROLLOUT_ANNOTATION: spec.rollout_id,
                                    DIGEST_ANNOTATION: spec.digest}
    _inject_model(template["spec"], spec, fetcher_image, meta.get("annotations", {}))

    selector = copy.deepcopy(stable_spec["selector"])
    match_labels = selector.setdefault("matchLabels", {})
    # The canary's own pods only: never the stable's, whose selector lacks the track.
    match_labels[TRACK_LABEL] = "canary"
    for key in (MODEL_LABEL, VERSION_LABEL):
        if key in match_labels:
            match_labels[key] = identity[key]

    carried = {k: v for k, v in stable_spec.items()
               if k not in ("replicas", "selector", "template", "paused")}
    owner = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
              "uid": meta["uid"]}] if meta.get("uid") else []
    canary = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_name(meta["name"]),
            "namespace": meta.get("namespace"),
            "labels": {**meta.get("labels", {}), **identity},
            "annotations": {ROLLOUT_ANNOTATION: spec.rollout_id, STABLE_ANNOTATION: meta["name"],
                            DIGEST_ANNOTATION: spec.digest,
                            TEMPLATE_HASH_ANNOTATION: template_hash(template)},
        },
        "spec": {**carried, "replicas": replicas, "selector": selector, "template": template},
    }
    if owner:
        # Deleting the stable workload takes its canary with it; no
        # blockOwnerDeletion, which would need delete rights on the owner.
        canary["metadata"]["ownerReferences"] = owner
    return canary


def promoted_template(canary_template: dict, stable: dict) -> dict:
    """The stable Deployment's next pod template: the canary's, relabelled as stable.

    The labels the stable's (immutable) selector requires keep their values, and
    the canary track label gives way to the stable's own, so the stable
    Deployment keeps owning exactly its pods.
    """
    template = copy.deepcopy(canary_template)
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    stable_labels = stable["spec"]["template"].get("metadata", {}).get("labels", {})
    if TRACK_LABEL in stable_labels:
        labels[TRACK_LABEL] = stable_labels[TRACK_LABEL]
    else:
        labels.pop(TRACK_LABEL, None)
    labels.update(stable["spec"]["selector"].get("matchLabels", {}))
    return template


def _inject_model(pod: dict, spec: CanarySpec, fetcher_image: str, annotations: dict) -> None:
    container = _model_container(pod, annotations.get(MODEL_CONTAINER_ANNOTATION))
    env = [e for e in container.get("env", []) if e.get("name") not in MODEL_ENV]
    container["env"] = env + [
        {"name": "MLCP_MODEL_URI", "value": spec.uri},
        {"name": "MLCP_MODEL_DIGEST", "value": spec.digest},
        {"name": "MLCP_MODEL_SIGNATURE_URI", "value": spec.signature_uri},
        {"name": "MLCP_MODEL_PATH", "value": MODEL_PATH},
    ]
    container["volumeMounts"] = _replace_named(
        container.get("volumeMounts", []),
        {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True})
    pod["volumes"] = _replace_named(pod.get("volumes", []), {"name": MODEL_VOLUME, "emptyDir": {}})
    # The pod starts only once these exact bytes verified against their
    # signature; a failing fetch keeps it out of service instead of serving them.
    fetch = {
        "name": FETCH_CONTAINER,
        "image": fetcher_image,
        "command": ["mlcp", "fetch", "--verify", "--uri", spec.uri, "--digest", spec.digest,
                    "--signature", spec.signature_uri, "--out", MODEL_PATH],
        "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODEL_DIR}],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
    }
    pod["initContainers"] = _replace_named(pod.get("initContainers", []), fetch)


def _model_container(pod: dict, name: str | None) -> dict:
    containers = pod.get("containers") or []
    if not containers:
        raise InvalidInput("the stable Deployment's pod template has no containers")
    if name is None:
        return containers[0]
    for container in containers:
        if container.get("name") == name:
            return container
    raise InvalidInput(f"{MODEL_CONTAINER_ANNOTATION} names container {name!r}, "
                       "which the pod template does not have", container=name)


def _replace_named(items: list[dict], item: dict) -> list[dict]:
    return [i for i in items if i.get("name") != item["name"]] + [item]
