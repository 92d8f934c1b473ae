"""The container image: its Dockerfile linted, read, and its entrypoint run the way the image runs it.

No image can be built or run on these machines (no container engine), so
these tests check what can be checked without one: hadolint on the
Dockerfile; the final stage's user, entrypoint and command; the manifests
asking for modes the entrypoint knows; and `docker/entrypoint.sh` itself,
started as the image starts it (by its mode, as uid 10001 where the tests run
as root, with the manifests' environment), against the test database and the
Kubernetes emulator. What the image adds on top (tini as PID 1, the packages
installed from PyPI rather than this checkout) is checked when it is built.
"""

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from tests.k8s.test_manifests import MANIFESTS, pod_specs, render
from tests.support.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
IMAGE_UID = 10001  # the manifests' runAsUser
MODES = {"web", "worker", "beat", "controller", "serve", "migrate", "migrated", "manage", "mlcp"}


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(stage name, [(INSTRUCTION, arguments)])], continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    result = []
    for line in logical:
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            result.append((arguments.split(" AS ")[-1].strip() if " AS " in arguments else "", []))
        elif result:
            result[-1][1].append((instruction.upper(), arguments.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1][1]


def last(instruction: str, stage=None):
    values = [arguments for name, arguments in (stage or final_stage()) if name == instruction]
    return values[-1] if values else None


# ---------------------------------------------------------------- lint

def test_hadolint_finds_nothing_in_the_dockerfile():
    linted = subprocess.run([shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint"),
                             "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=120)
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")


def test_hadolint_would_catch_a_regression(tmp_path):
    """The lint is real: an apt-get install that drags in recommended packages is flagged."""
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("apt-get install --yes --no-install-recommends",
                                                     "apt-get install --yes"))
    linted = subprocess.run([str(Path(sys.executable).parent / "hadolint"), "--no-color", str(broken)],
                            capture_output=True, text=True, timeout=120)
    assert linted.returncode != 0 and "DL3015" in linted.stdout


# ---------------------------------------------------------------- what the Dockerfile says

def test_the_image_is_multi_stage_and_runs_as_the_manifests_non_root_user():
    assert [name for name, _ in stages()] == ["build", "runtime"]
    user = last("USER")
    assert user.split(":")[0] == str(IMAGE_UID)
    # Nothing after USER may need root: it would fail at build time.
    tail = final_stage()[[i for i, (name, _) in enumerate(final_stage()) if name == "USER"][-1]:]
    assert not [arguments for name, arguments in tail if name == "RUN"]
    pod_security = [pod["securityContext"] for pod in pod_specs(render(MANIFESTS / "base")).values()]
    assert all(context["runAsUser"] == IMAGE_UID and context["runAsNonRoot"] for context in pod_security)


def test_the_entrypoint_is_tini_then_the_script_and_the_default_mode_is_web():
    assert json.loads(last("ENTRYPOINT")) == ["tini", "--", "mlcp-entrypoint"]
    assert json.loads(last("CMD")) == ["web"]
    copies = [arguments for name, arguments in final_stage() if name == "COPY"]
    assert "--chmod=0755 docker/entrypoint.sh /usr/local/bin/mlcp-entrypoint" in copies


def test_the_default_image_gets_the_cpu_build_of_the_torch_mlcp_pins():
    build = stages()[0][1]
    arguments = dict(re.fullmatch(r"(\w+)=(\S+)", a).groups() for name, a in build if name == "ARG" and "=" in a)
    assert arguments["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert arguments["ONNXRUNTIME"] == "onnxruntime"
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_pin = next(pin for pin in pins if re.match(r"torch\b", pin))
    assert arguments["TORCH_VERSION"] in SpecifierSet(torch_pin.removeprefix("torch"))


def test_the_build_context_leaves_out_tests_development_tools_and_local_state():
    ignored = {line for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")}
    assert {".git", ".venv", "tests", "devtools", "bench", "data"} <= ignored
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert not {pattern.rstrip("*") for pattern in packages["include"]} & ignored


# ---------------------------------------------------------------- the manifests ask for what it runs

@pytest.mark.parametrize("build", ["base", "overlays/gpu"])
def test_every_manifest_container_starts_a_mode_the_entrypoint_knows(build):
    objects = render(MANIFESTS / build)
    job_pods = {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Job"}
    for name, pod in {**pod_specs(objects), **job_pods}.items():
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["image"].startswith(("ghcr.io/example/mlcp:", "ghcr.io/example/mlcp-cuda:")), name
            assert "command" not in container, f"{name} would bypass tini and the entrypoint"
            assert container["args"][0] in MODES, name


def test_the_entrypoint_script_lists_exactly_the_modes_the_tests_know():
    script = ENTRYPOINT.read_text()
    cases = set(re.findall(r"^\s{4}([a-z]+)\)", script, re.MULTILINE))
    assert cases == MODES


# ---------------------------------------------------------------- the entrypoint, run as the image runs it

def _manifest_env(container_name: str) -> dict:
    """The non-secret environment the manifests give a container (the ConfigMap and plain values)."""
    objects = render(MANIFESTS / "base")
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mlcp-config")
    container = next(c for pod in pod_specs(objects).values() for c in pod["containers"]
                     if c["name"] == container_name)
    return {**config["data"], **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e}}


def _as_image_user(command: list[str]) -> list[str]:
    """`command` run as uid 10001, as the pods run (an account with no home, like the image's), when the tests
    run as root and that user can start this interpreter; else as the tests' own user (an interpreter under a
    private home, e.g. pyenv in /root, is out of its reach: the image's lives in /usr/local)."""
    return [*_switch_to_image_user(), *command]


@functools.cache
def _switch_to_image_user() -> tuple[str, ...]:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return ()
    switch = ("setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups")
    # Through sh and PATH, as the entrypoint starts it.
    probe = subprocess.run([*switch, "sh", "-c", "exec python -c 'import django'"], cwd="/", capture_output=True,
                           env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}, timeout=120)
    return switch if probe.returncode == 0 else ()


@pytest.fixture
def image_home(tmp_path):
    """A writable home and data directory for the image's user, as the pod's emptyDir and volume are."""
    for name in ("home", "data"):
        (tmp_path / name).mkdir()
        if os.geteuid() == 0:
            os.chown(tmp_path / name, IMAGE_UID, IMAGE_UID)
    return tmp_path


def _image_env(home: Path, container_name: str, **extra) -> dict:
    venv_bin = str(Path(sys.executable).parent)  # the image puts its virtual environment first on PATH
    return {"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": str(home / "home"), "MLCP_APP_DIR": str(ROOT),
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "SECRET_KEY": "test-secret-for-the-image",
            **_manifest_env(container_name), "MLCP_DATA_DIR": str(home / "data"),
            "MLCP_ARTIFACT_DIR": str(home / "data" / "artifacts"), **extra}


def test_web_mode_serves_healthz_as_the_image_user(image_home):
    port = free_port()
    args = [arg for arg in pod_specs(render(MANIFESTS / "base"))["mlcp-web"]["containers"][0]["args"]
            if not arg.startswith(("--bind", "--workers"))]
    process = subprocess.Popen(_as_image_user(["sh", str(ENTRYPOINT), *args, f"--bind=127.0.0.1:{port}",
                                               "--workers=1"]),
                               env=_image_env(image_home, "web"), cwd="/", stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_for_port(port, timeout=120, process=process)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"Host": "mlcp-web"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert (response.status, json.load(response)) == (200, {"status": "ok"})
    finally:
        process.send_signal(signal.SIGTERM)  # what the kubelet sends; exec left gunicorn as the process
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()[-2000:]


def test_serve_mode_runs_the_model_server_command_as_the_image_user(image_home):
    result = subprocess.run(_as_image_user(["sh", str(ENTRYPOINT), "serve", "--help"]),
                            env=_image_env(image_home, "web"), cwd="/", capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "--model-file" in result.stdout


def test_worker_mode_is_the_celery_worker_of_the_mlcp_app(image_home):
    result = subprocess.run(_as_image_user(["sh", str(ENTRYPOINT), "worker", "--help"]),
                            env=_image_env(image_home, "worker"), cwd="/", capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "--concurrency" in result.stdout


def test_an_unknown_mode_is_refused_with_the_usage(image_home):
    result = subprocess.run(["sh", str(ENTRYPOINT), "bash"], env=_image_env(image_home, "web"), cwd="/",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 64
    assert "unknown mode 'bash'" in result.stderr and "controller" in result.stderr


def test_the_build_step_collects_static_files_without_a_database_or_secret(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(MLCP_STATIC_ROOT=str(tmp_path / "static"), MLCP_DATA_DIR=str(tmp_path / "data"))
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity=0"], cwd=ROOT,
                   env=env, check=True, timeout=300)
    assert (tmp_path / "static" / "admin").is_dir()


@pytest.mark.django_db(transaction=True)
def test_migrate_and_controller_modes_reach_the_database_and_the_cluster(image_home, kube_emulator):
    """Run as the test runner's user: the test database belongs to it (the pods reach theirs over the network)."""
    from rollouts.models import ControllerLease
    from tests.support.webserver import test_database_url

    env = _image_env(image_home, "controller", DATABASE_URL=test_database_url(), MLCP_K8S_HOST=kube_emulator.url,
                     MLCP_CONTROLLER_HEARTBEAT_FILE=str(image_home / "heartbeat"))
    migrate = subprocess.run(["sh", str(ENTRYPOINT), "migrate"], env=env, cwd="/", capture_output=True, text=True,
                             timeout=300)
    assert migrate.returncode == 0, migrate.stderr
    assert "No migrations to apply" in migrate.stdout

    args = pod_specs(render(MANIFESTS / "base"))["mlcp-controller"]["containers"][0]["args"]
    controller = subprocess.run(["sh", str(ENTRYPOINT), *args, "--once"], env=env, cwd="/", capture_output=True,
                                text=True, timeout=300)
    assert controller.returncode == 0, controller.stderr
    assert ControllerLease.objects.get().tick_count == 1
    # The pod's liveness probe, as the manifest runs it, finds the loop's heartbeat.
    probe = pod_specs(render(MANIFESTS / "base"))["mlcp-controller"]["containers"][0]["livenessProbe"]
    check = subprocess.run(probe["exec"]["command"], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0, check.stderr


def test_migrated_mode_waits_for_unapplied_migrations_then_passes_once_migrate_has_run(image_home):
    """The init container of every database reader: it fails (after MLCP_MIGRATE_WAIT_S) on a schema behind the
    image's migrations, and passes at once after the migrate Job's mode has run."""
    env = _image_env(image_home, "web", DATABASE_URL=f"sqlite:///{image_home / 'data' / 'fresh.sqlite3'}",
                     MLCP_MIGRATE_WAIT_S="0")
    behind = subprocess.run(["sh", str(ENTRYPOINT), "migrated"], env=env, cwd="/", capture_output=True, text=True,
                            timeout=300)
    assert behind.returncode == 1
    assert "migrations still not applied after 0s" in behind.stderr

    migrate = subprocess.run(["sh", str(ENTRYPOINT), "migrate"], env=env, cwd="/", capture_output=True, text=True,
                             timeout=600)
    assert migrate.returncode == 0, migrate.stderr
    current = subprocess.run(["sh", str(ENTRYPOINT), "migrated"], env=env, cwd="/", capture_output=True, text=True,
                             timeout=300)
    assert current.returncode == 0, current.stderr
    assert "waiting" not in current.stderr
