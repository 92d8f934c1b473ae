"""`mlcp` needs neither Django nor Celery nor any development extra: CI
machines and serving pods install `pip install .` and run `mlcp push`,
`mlcp fetch --verify` and `mlcp serve` with nothing else.

The slow test builds mlcp's wheel and runs those commands from the unpacked
wheel, in processes where Django, Celery, mlcp's control-plane packages, the
`dev`/`test` extras, `devtools` and `tests` cannot be imported, against a real
mlcp server.
"""

import configparser
import email
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

import pytest

from controlplane.accounts import issue_token
from controlplane.roles import Role
from tests.factories import tiny_onnx
from tests.support.blocked_imports import CONTROL_PLANE, DEV_ONLY, ROOT, blocked_env, run_python
from tests.support.servers import free_port
from tests.support.webserver import gunicorn_server

BLOCKED = CONTROL_PLANE + DEV_ONLY
RUN_MAIN = "import runpy, sys; sys.argv[0] = 'mlcp'; runpy.run_module('cli.main', run_name='__main__')"


@pytest.mark.parametrize("command", [[], ["push"], ["fetch"], ["serve"], ["rollout", "start"], ["golden-set", "push"]])
def test_help_parses_with_the_control_plane_blocked(tmp_path, command):
    result = run_python(RUN_MAIN, blocked_env(tmp_path, BLOCKED), *command, "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: mlcp")


# --- what `pip install .` gives a CI job or a pod -------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """mlcp's wheel, built from a copy of this checkout (a build writes into its source tree)."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "data", "build", "*.egg-info",
                                                                 "__pycache__", ".cache"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(out), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (path,) = out.glob("mlcp-*.whl")
    return path


def test_the_wheel_ships_the_server_and_the_cli_but_no_development_code(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(info))
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(info.replace("METADATA", "entry_points.txt")).decode())
    packages = {name.partition("/")[0] for name in names if "/" in name and ".dist-info" not in name}
    assert packages == {"controlplane", "registry", "workers", "rollouts", "oncall", "ui", "k8s", "serving", "cli"}
    assert entry_points["console_scripts"]["mlcp"] == "cli.main:main"
    requires = metadata.get_all("Requires-Dist")
    always = {r.split(";")[0].strip() for r in requires if "extra ==" not in r}
    dev = {r.split(";")[0].strip() for r in requires if 'extra == "dev"' in r}
    assert not {r for r in always if r.startswith(("kmock", "scikit-learn"))}
    assert {r.split(">")[0] for r in dev} == {"kmock", "scikit-learn"}


def _mlcp(env, *args, cwd):
    """The `mlcp` console script as `pip install .` writes it, run from the unpacked wheel."""
    return subprocess.run([sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())",
                           *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_push_fetch_verify_and_serve_from_the_wheel_with_only_its_own_dependencies(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    # Only the unpacked wheel on the path (no checkout: cwd elsewhere), and everything
    # outside the main dependencies, plus the control plane itself, refused.
    env = blocked_env(tmp_path, BLOCKED, pythonpath=[site])
    work = tmp_path / "work"
    work.mkdir()
    model_file = work / "tiny.onnx"
    model_file.write_bytes(tiny_onnx(seed=42))

    with gunicorn_server() as (base_url, _):
        auth = ["--url", base_url, "--token", issue_token("ci-bot", Role.CI)]
        pushed = _mlcp(env, *auth, "--json", "push", "tiny", str(model_file), cwd=work)
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        version = json.loads(pushed.stdout)
        fetched = _mlcp(env, *auth, "--json", "fetch", "tiny", str(version["number"]), "--out",
                        str(work / "fetched.onnx"), "--digest", version["digest"], "--verify", cwd=work)
        assert fetched.returncode == 0, fetched.stderr[-3000:]
        assert json.loads(fetched.stdout)["verified"] is True
        keys = json.load(urllib.request.urlopen(urllib.request.Request(
            f"{base_url}/api/v1/signing-keys/", headers={"Authorization": f"Token {auth[-1]}"}), timeout=10))
    (work / "registry.pub").write_text(keys[0]["pem"])
    verified = _mlcp(env, "verify", str(work / "fetched.onnx"), str(work / "fetched.onnx.sig"),
                     "--public-key", str(work / "registry.pub"), cwd=work)
    assert verified.returncode == 0, verified.stderr[-3000:]

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())", "serve",
         "--model-file", str(work / "fetched.onnx"), "--bundle", str(work / "fetched.onnx.sig"),
         "--public-key", str(work / "registry.pub"), "--digest", version["digest"], "--model", "tiny",
         "--version", str(version["number"]), "--track", "canary", "--port", str(port)],
        env=env, cwd=work, stderr=subprocess.PIPE, text=True)
    try:
        ready = _wait_ready(f"http://127.0.0.1:{port}", server)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", method="POST",
                                         data=json.dumps({"inputs": [[1, 2, 3, 4]]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and len(json.load(response)["classes"]) == 1
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=120)  # a bound for a hung server, not how fast it drains
    assert ready["digest"] == f"sha256:{version['digest']}"
    # The server really ran from the wheel, not from this checkout.
    probe = run_python("import cli, serving; print(cli.__file__, serving.__file__)", env, cwd=work)
    assert probe.stdout.count(str(site)) == 2, probe.stdout + probe.stderr


def _wait_ready(url, process, timeout_s=60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mlcp serve exited with {process.returncode}: {process.stderr.read()}")
        try:
            # A busy machine may answer slowly: a timeout is one more try, not a failure.
            with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
                return json.load(response)
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise AssertionError(f"mlcp serve not ready within {timeout_s}s")
