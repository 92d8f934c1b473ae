"""`mlcp push` streams the artifact as the request body (`PUT .../versions/stream`), never as multipart."""

import hashlib
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

from controlplane.accounts import issue_token
from controlplane.roles import Role
from registry.models import AuditEvent, ModelVersion, RegisteredModel
from tests.factories import tiny_onnx
from tests.registry.test_signing import _ci_sign, _keypair
from tests.support.webserver import gunicorn_server


def _mlcp(base_url, token, *args):
    return subprocess.run([sys.executable, "-m", "cli.main", "--url", base_url, "--token", token, *args],
                          capture_output=True, text=True, timeout=120)


class _RecordingApi(BaseHTTPRequestHandler):
    """Answers as the API would, and keeps what each request carried (its body as a digest)."""

    requests: list[dict] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._answer(200, {"name": "resnet"})

    def do_PUT(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        self.requests.append({"method": "PUT", "path": self.path, "headers": dict(self.headers),
                              "length": length, "digest": hashlib.sha256(body).hexdigest()})
        self._answer(201, {"model": "resnet", "number": 1, "status": "registered", "format": "onnx",
                           "digest": hashlib.sha256(body).hexdigest(), "size": length, "signer": "mlcp-registry"})

    def do_POST(self):  # noqa: N802
        self.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers)})
        self._answer(400, {"code": "unexpected", "detail": "the CLI should not have posted"})

    def _answer(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_api():
    _RecordingApi.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _RecordingApi.requests
    finally:
        server.shutdown()
        server.server_close()


def test_push_sends_the_file_as_an_octet_stream_body_with_metadata_headers(recording_api, tmp_path):
    base_url, seen = recording_api
    model_file = tmp_path / "résnet v2.onnx"
    data = tiny_onnx() * 300  # several of the client's blocks
    model_file.write_bytes(data)
    result = _mlcp(base_url, "a-token", "--json", "push", "resnet", str(model_file), "--git-commit", "abc1234",
                   "--tag", "team=vision")
    assert result.returncode == 0, result.stderr
    [upload] = seen
    assert (upload["method"], upload["path"]) == ("PUT", "/api/v1/models/resnet/versions/stream")
    assert upload["headers"]["Content-Type"] == "application/octet-stream"
    assert "Transfer-Encoding" not in upload["headers"]
    assert (upload["length"], upload["digest"]) == (len(data), hashlib.sha256(data).hexdigest())
    metadata = json.loads(upload["headers"]["X-Mlcp-Metadata"])
    assert metadata == {"format": "onnx", "sha256": hashlib.sha256(data).hexdigest(), "git_commit": "abc1234",
                        "tags": '{"team": "vision"}'}
    assert unquote(upload["headers"]["X-Mlcp-Filename"]) == "résnet v2.onnx"


@pytest.mark.django_db(transaction=True)
def test_push_with_a_ci_bundle_registers_a_client_signed_version_through_a_real_server(tmp_path, settings):
    private, public = _keypair(tmp_path, "ci-release-2026")
    settings.MLCP_TRUSTED_KEY_FILES = [str(public)]
    data = tiny_onnx()
    bundle = tmp_path / "model.onnx.sig"
    bundle.write_bytes(_ci_sign(data, private, tmp_path))  # signs tmp_path/model.onnx, the file pushed below
    token = issue_token("ci-bot", Role.CI)
    with gunicorn_server() as (base_url, _):
        result = _mlcp(base_url, token, "--json", "push", "resnet", str(tmp_path / "model.onnx"), "--bundle",
                       str(bundle))
    assert result.returncode == 0, result.stderr
    version = json.loads(result.stdout)
    assert (version["digest"], version["signature_source"], version["signer"]) == (
        hashlib.sha256(data).hexdigest(), "client", "ci-release-2026")
    assert ModelVersion.objects.get().artifact_name == "model.onnx"
    assert AuditEvent.objects.filter(action="version.registered", actor="ci-bot").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_refused_streamed_push_prints_the_servers_code(tmp_path):
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(tiny_onnx())
    RegisteredModel.objects.create(name="resnet")  # so the refusal is the upload's, not the model's creation
    viewer = issue_token("reader", Role.VIEWER)
    with gunicorn_server() as (base_url, _):
        result = _mlcp(base_url, viewer, "push", "resnet", str(model_file))
    assert result.returncode == 2
    assert "permission_denied" in result.stderr
    assert ModelVersion.objects.count() == 0
