"""The `mlcp` CLI against a real server: push, fetch --verify, and clear errors."""

import hashlib
import json
import subprocess
import sys

import pytest

from controlplane.accounts import issue_token
from controlplane.roles import Role
from registry.models import ModelVersion
from tests.factories import tiny_onnx
from tests.support.webserver import gunicorn_server

pytestmark = pytest.mark.django_db(transaction=True)


def _mlcp(base_url, token, *args):
    return subprocess.run([sys.executable, "-m", "cli.main", "--url", base_url, "--token", token,
                           *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def server():
    with gunicorn_server() as (base_url, _):
        yield base_url


def test_push_registers_a_version_and_prints_json(server, tmp_path):
    model_file = tmp_path / "resnet.onnx"
    model_file.write_bytes(tiny_onnx())
    token = issue_token("ci-bot", Role.CI)
    result = _mlcp(server, token, "--json", "push", "resnet", str(model_file), "--git-commit", "abc1234",
                   "--tag", "team=vision")
    assert result.returncode == 0, result.stderr
    version = json.loads(result.stdout)
    assert version["model"] == "resnet" and version["number"] == 1
    assert version["digest"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert version["tags"] == {"team": "vision"}
    assert "uploading" in result.stderr  # the progress bar


def test_fetch_verify_keeps_only_bytes_that_verify(server, tmp_path):
    model_file = tmp_path / "resnet.onnx"
    model_file.write_bytes(tiny_onnx())
    token = issue_token("ci-bot", Role.CI)
    _mlcp(server, token, "push", "resnet", str(model_file))
    out = tmp_path / "fetched.onnx"
    result = _mlcp(server, token, "fetch", "resnet", "1", "--out", str(out), "--verify")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == model_file.read_bytes()


def test_wrong_token_exits_nonzero_with_the_servers_message(server, tmp_path):
    model_file = tmp_path / "resnet.onnx"
    model_file.write_bytes(tiny_onnx())
    result = _mlcp(server, "wrong-token", "push", "resnet", str(model_file))
    assert result.returncode == 2
    assert "authentication_failed" in result.stderr
    assert ModelVersion.objects.count() == 0


def test_unreachable_server_is_a_clear_error_with_its_own_exit_status(tmp_path):
    model_file = tmp_path / "resnet.onnx"
    model_file.write_bytes(tiny_onnx())
    result = _mlcp("http://127.0.0.1:9", "t", "push", "resnet", str(model_file))
    assert result.returncode == 3  # not 2: the server refused nothing, it never answered
    assert "cannot reach mlcp at http://127.0.0.1:9: Connection refused" in result.stderr
    assert "HTTP" not in result.stderr


def test_an_unreachable_server_with_json_still_prints_json():
    result = _mlcp("http://127.0.0.1:9", "t", "models", "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout) == {"code": "unreachable", "status": None,
                                         "detail": "cannot reach mlcp at http://127.0.0.1:9: Connection refused"}
