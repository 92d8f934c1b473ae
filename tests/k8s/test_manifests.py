"""The kustomize manifests that deploy mlcp: schema-valid, coherent, least-privilege."""

import copy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from k8s import DeploymentWorkloads, HTTPRouteRouter, ReplicaRatioRouter
from tests.k8s.conftest import model_server
from tests.k8s.test_traffic import create_route, httproute
from tests.k8s.test_workloads import SPEC

MANIFESTS = Path(__file__).resolve().parents[2] / "k8s" / "manifests"
BUILDS = ["base", "overlays/gpu"]
# The oldest Kubernetes mlcp supports and the newest schema the package ships.
KUBERNETES_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
PLACEHOLDER_IMAGE = "ghcr.io/example/mlcp:0.1.0"
PLACEHOLDER_CUDA_IMAGE = "ghcr.io/example/mlcp-cuda:0.1.0"  # the Dockerfile's CUDA variant, GPU workers only


# A small kustomize renderer, so the tests need no kustomize binary. It does
# exactly what the manifests use (resources, strategic-merge `patches` files,
# nameSuffix) and refuses anything else; where kubectl is installed,
# test_renderer_matches_kubectl_kustomize checks it against the real one.
SUPPORTED = {"apiVersion", "kind", "resources", "patches", "nameSuffix"}


def render(directory: Path) -> list[dict]:
    """The objects `kustomize build directory` would output (in file order)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise NotImplementedError(f"{directory}: kustomize fields {sorted(unsupported)} not supported")
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch_entry in kustomization.get("patches", []):
        patch = yaml.safe_load((directory / patch_entry["path"]).read_text())
        targets = [o for o in objects if (o["kind"], o["metadata"]["name"]) ==
                   (patch["kind"], patch["metadata"]["name"])]
        if len(targets) != 1:
            raise ValueError(f"patch {patch_entry['path']} matches {len(targets)} objects")
        targets[0].update(strategic_merge(targets[0], patch))
    for obj in objects:
        obj["metadata"]["name"] += kustomization.get("nameSuffix", "")
    return objects


def strategic_merge(base, patch):
    """Maps merge key by key; lists of named items merge by `name`; other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(i, dict) and "name" in i for i in base + patch)):
        merged = [copy.deepcopy(i) for i in base]
        for item in patch:
            same = [n for n, existing in enumerate(merged) if existing["name"] == item["name"]]
            if same:
                merged[same[0]] = strategic_merge(merged[same[0]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def by_id(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def pod_specs(objects):
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"]
            for o in objects if o["kind"] == "Deployment"}


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(build, version):
    """Every rendered object validates against the official OpenAPI-derived JSON
    schema of its kind (package kubernetes-validate, "strict" variant: unknown
    fields are errors, required fields, types and enums are checked), for the
    oldest supported and the newest Kubernetes version. Schemas cannot see
    cross-object references; test_manifests_are_coherent checks those.
    """
    objects = render(MANIFESTS / build)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("build", BUILDS)
def test_renderer_matches_kubectl_kustomize(build):
    rendered = subprocess.run(["kubectl", "kustomize", str(MANIFESTS / build)],
                              check=True, capture_output=True, text=True, timeout=60).stdout
    assert by_id(yaml.safe_load_all(rendered)) == by_id(render(MANIFESTS / build))


def test_schema_validation_rejects_unknown_and_mistyped_fields():
    deployment = copy.deepcopy(by_id(render(MANIFESTS / "base"))["Deployment", "mlcp-web"])
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    del deployment["spec"]["replica"]
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("build", BUILDS)
def test_manifests_are_coherent(build):
    objects = render(MANIFESTS / build)
    ids = by_id(objects)
    assert not [o for o in objects if o["kind"] == "Secret"], "secret values never live in git"
    assert not [o for o in objects if "namespace" in o["metadata"]], "base is namespace-agnostic"
    for name, pod in pod_specs(objects).items():
        deployment = ids["Deployment", name]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["image"] == (PLACEHOLDER_CUDA_IMAGE if name.endswith("-gpu") else PLACEHOLDER_IMAGE)
            assert "command" not in container, f"{name}: the image's entrypoint picks the process from args"
            assert container["resources"]["requests"] and container["resources"]["limits"]
            for ref in container.get("envFrom", []):
                assert ("ConfigMap", ref["configMapRef"]["name"]) in ids
            for env in container.get("env", []):
                if "secretKeyRef" in env.get("valueFrom", {}):
                    assert env["valueFrom"]["secretKeyRef"]["name"] == "mlcp-secrets"
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in ids
        if pod.get("serviceAccountName"):
            assert ("ServiceAccount", pod["serviceAccountName"]) in ids
        else:
            assert pod["automountServiceAccountToken"] is False, f"{name} needs no API token"
    for service in (o for o in objects if o["kind"] == "Service"):
        selected = [d for d in objects if d["kind"] == "Deployment" and service["spec"]["selector"].items()
                    <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, service["metadata"]["name"]
    controller = ids["Deployment", "mlcp-controller"]
    assert controller["spec"]["replicas"] == 1
    assert controller["spec"]["template"]["spec"]["containers"][0]["args"] == ["controller"]


@pytest.mark.parametrize("build", BUILDS)
def test_migrations_run_once_in_a_job_and_every_database_reader_waits_for_them(build):
    objects = render(MANIFESTS / build)
    jobs = [o for o in objects if o["kind"] == "Job"]
    assert [job["metadata"]["name"] for job in jobs] == ["mlcp-migrate"]
    job_pod = jobs[0]["spec"]["template"]["spec"]
    assert [c["args"] for c in job_pod["containers"]] == [["migrate"]]
    assert job_pod["automountServiceAccountToken"] is False
    readers = {name: pod for name, pod in pod_specs(objects).items()
               if any(env["name"] == "DATABASE_URL" for c in pod["containers"] for env in c.get("env", []))}
    assert set(readers) >= {"mlcp-web", "mlcp-controller", "mlcp-worker"}
    for name, pod in readers.items():
        waits = [c for c in pod.get("initContainers", []) if c["args"] == ["migrated"]]
        assert len(waits) == 1, f"{name} would start against an older schema"
        assert waits[0]["image"] == pod["containers"][0]["image"], f"{name} must wait for its own migrations"
        assert {e["name"] for e in waits[0]["env"]} >= {"DATABASE_URL", "SECRET_KEY"}


def test_gpu_overlay_adds_a_gpu_worker_beside_the_cpu_one():
    pods = pod_specs(render(MANIFESTS / "overlays/gpu"))
    gpu, cpu = pods["mlcp-worker-gpu"], pods["mlcp-worker"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert gpu["containers"][0]["args"][:2] == ["worker", "--queues=gates"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]
    assert "mlcp-worker-gpu" not in pod_specs(render(MANIFESTS / "base"))


def permissions_used(requests):
    """(apiGroup, resource[/subresource], verb) of each recorded API request."""
    used = set()
    for method, group, plural, subresource, name, query in requests:
        if method == "GET":
            verb = "watch" if query.get("watch") == "true" else "get" if name else "list"
        else:
            verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
        used.add((group, f"{plural}/{subresource}" if subresource else plural, verb))
    return used


def role_permissions(role):
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_controller_rbac_is_least_privilege(kube_emulator, cluster, namespace):
    """The Role grants exactly the calls a whole rollout makes through k8s/:
    canary, both routers, promotion, rollback; recorded by the emulator."""
    cluster.apps.create_namespaced_deployment(namespace, model_server())
    create_route(cluster, namespace, httproute())
    before = kube_emulator.mark()

    workloads = DeploymentWorkloads(cluster)
    workloads.read_stable(namespace, "resnet-server")
    workloads.ensure_canary(namespace, "resnet-server", SPEC, replicas=1)
    workloads.canary_ready(namespace, "resnet-server")
    ReplicaRatioRouter(workloads, namespace, "resnet-server", 4).route(50)
    by_route = HTTPRouteRouter(cluster, namespace, "resnet", "resnet-server", "resnet-server-canary")
    by_route.route(50)
    by_route.observe()
    workloads.promote_canary(namespace, "resnet-server")
    kube_emulator.settle_deployments(namespace, "resnet-server")
    workloads.promote_canary(namespace, "resnet-server")
    by_route.route(0)
    workloads.scale_canary_to_zero(namespace, "resnet-server")

    used = permissions_used(kube_emulator.requests(since=before))
    role = by_id(render(MANIFESTS / "base"))["Role", "mlcp-controller"]
    assert role_permissions(role) == used
