"""The Deployment workload adapter against the Kubernetes emulator, through the real client."""

import pytest

from k8s import CanarySpec, StableWorkloadMissing
from k8s.canary import FETCH_CONTAINER, MODEL_PATH
from tests.k8s.conftest import DEPLOYMENTS

SPEC = CanarySpec(model="resnet", version="2", uri="s3://models/resnet/2/model.onnx",
                  digest="sha256:" + "ab" * 32, signature_uri="s3://models/resnet/2/model.sig",
                  rollout_id="ro-42")


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_canary_is_created_from_stable_template_with_model_injected(kube_emulator, workloads, namespace, stable):
    state = workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=1)

    canary = kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server-canary")
    assert (state.name, state.replicas, state.model, state.version, state.rollout_id) == \
        ("resnet-server-canary", 1, "resnet", "2", "ro-42")
    assert canary["metadata"]["labels"]["mlcp.io/track"] == "canary"
    assert canary["metadata"]["annotations"]["mlcp.io/rollout-id"] == "ro-42"
    assert canary["metadata"]["ownerReferences"][0]["name"] == "resnet-server"
    assert canary["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "resnet-server", "mlcp.io/track": "canary"}
    template = canary["spec"]["template"]
    assert template["metadata"]["labels"] == {
        "app.kubernetes.io/name": "resnet-server", "mlcp.io/track": "canary",
        "mlcp.io/model": "resnet", "mlcp.io/version": "2"}
    server, shipper = template["spec"]["containers"]
    assert server["image"] == "ghcr.io/example/model-server:1.4"
    assert shipper == stable["spec"]["template"]["spec"]["containers"][1]
    assert env_of(server) == {
        "LOG_LEVEL": "info", "MLCP_MODEL_URI": SPEC.uri, "MLCP_MODEL_DIGEST": SPEC.digest,
        "MLCP_MODEL_SIGNATURE_URI": SPEC.signature_uri, "MLCP_MODEL_PATH": MODEL_PATH}
    [fetch] = template["spec"]["initContainers"]
    assert fetch["name"] == FETCH_CONTAINER
    assert fetch["command"] == [
        "mlcp", "fetch", "--verify", "--uri", SPEC.uri, "--digest", SPEC.digest,
        "--signature", SPEC.signature_uri, "--out", "/models/model.onnx"]
    assert {"name": "mlcp-model", "emptyDir": {}} in template["spec"]["volumes"]
    assert fetch["volumeMounts"] == [{"name": "mlcp-model", "mountPath": "/models"}]
    assert {"name": "mlcp-model", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    # The stable Deployment itself is left alone.
    assert kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server")["spec"]["template"] == \
        stable["spec"]["template"]


def test_ensure_canary_twice_changes_nothing(kube_emulator, workloads, namespace, stable):
    workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=2)
    versions = kube_emulator.versions(DEPLOYMENTS, namespace, "resnet-server-canary")
    before = kube_emulator.mark()

    again = workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=2)

    assert kube_emulator.versions(DEPLOYMENTS, namespace, "resnet-server-canary") == versions
    assert [r for r in kube_emulator.requests(since=before) if r[0] in ("POST", "PATCH", "PUT")] == []
    assert again.replicas == 2


def test_ensure_canary_repairs_drift_and_follows_a_new_version(kube_emulator, workloads, namespace, stable):
    workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=2)
    workloads.scale(namespace, "resnet-server-canary", 5)  # someone scaled it by hand

    newer = CanarySpec(**{**SPEC.__dict__, "version": "3", "uri": "s3://models/resnet/3/model.onnx"})
    state = workloads.ensure_canary(namespace, "resnet-server", newer, replicas=2)

    canary = kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server-canary")
    assert (state.replicas, state.version) == (2, "3")
    assert env_of(canary["spec"]["template"]["spec"]["containers"][0])["MLCP_MODEL_URI"] == newer.uri
    assert len(canary["spec"]["template"]["spec"]["initContainers"]) == 1


def test_missing_stable_deployment_is_a_clear_error(workloads, namespace):
    with pytest.raises(StableWorkloadMissing) as caught:
        workloads.ensure_canary(namespace, "no-such-server", SPEC, replicas=1)

    error = caught.value
    assert f"{namespace}/no-such-server" in error.detail
    assert error.code == "stable_workload_missing"
    assert error.http_status == 404
    assert error.context == {"namespace": namespace, "deployment": "no-such-server"}


def test_canary_is_ready_only_when_all_its_pods_run_the_latest_template(kube_emulator, workloads, namespace, stable):
    workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=2)
    assert not workloads.canary_ready(namespace, "resnet-server")

    kube_emulator.settle_deployments(namespace, "resnet-server-canary")
    assert workloads.canary_ready(namespace, "resnet-server")

    workloads.scale(namespace, "resnet-server-canary", 3)  # new generation, not yet observed
    assert not workloads.canary_ready(namespace, "resnet-server")


def test_promote_makes_canary_the_stable_template(kube_emulator, workloads, namespace, stable):
    workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=1)
    canary_template = kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server-canary")["spec"]["template"]

    assert workloads.promote_canary(namespace, "resnet-server") is False  # stable still rolling

    promoted = kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server")
    assert promoted["spec"]["template"]["spec"] == canary_template["spec"]
    assert promoted["spec"]["template"]["metadata"]["labels"] == {
        "app.kubernetes.io/name": "resnet-server", "mlcp.io/track": "stable",
        "mlcp.io/model": "resnet", "mlcp.io/version": "2"}
    assert promoted["metadata"]["labels"]["mlcp.io/version"] == "2"
    assert promoted["metadata"]["annotations"]["mlcp.io/rollout-id"] == "ro-42"
    assert promoted["spec"]["replicas"] == 4
    assert kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server-canary")["spec"]["replicas"] == 1

    kube_emulator.settle_deployments(namespace, "resnet-server")
    assert workloads.promote_canary(namespace, "resnet-server") is True
    assert kube_emulator.object(DEPLOYMENTS, namespace, "resnet-server-canary")["spec"]["replicas"] == 0
    stable_versions = kube_emulator.versions(DEPLOYMENTS, namespace, "resnet-server")

    assert workloads.promote_canary(namespace, "resnet-server") is True  # repeating is harmless
    assert kube_emulator.versions(DEPLOYMENTS, namespace, "resnet-server") == stable_versions
