"""The streamed upload, `PUT models/{name}/versions/stream`: the artifact as the body, its metadata in headers.

In-process tests pin the rules (validation, caps, roles, dedup, audit); tests
through a real gunicorn server pin what only a real socket shows (constant
memory for 1 GiB, a client gone mid-body, chunked bodies refused), on both stores.
"""

import base64
import hashlib
import json
import socket
from urllib.parse import urlparse

import pytest
import requests

from controlplane.accounts import issue_token
from controlplane.roles import Role
from registry import signing
from registry.models import AuditEvent, Blob, ModelVersion, RegisteredModel
from tests.factories import tiny_onnx, upload, write_large_onnx
from tests.registry.test_signing import _ci_sign, _keypair
from tests.registry.test_upload_server import (UPLOAD_GROWTH_LIMIT_KB, WORKER_PEAK_LIMIT_KB, _wait_until_no_staging)
from tests.support.artifacts import both_stores, filesystem_only
from tests.support.servers import reset_rss_high_water, rss_high_water_kb, rss_kb
from tests.support.webserver import gunicorn_server, worker_pids

GIB = 1024**3
STREAM = "/api/v1/models/resnet/versions/stream"


def _put(client, data: bytes, *, metadata=None, content_type="application/octet-stream", **headers):
    if metadata is not None:
        headers["HTTP_X_MLCP_METADATA"] = metadata if isinstance(metadata, str) else json.dumps(metadata)
    return client.generic("PUT", STREAM, data, content_type=content_type, **headers)


# ------------------------------------------------------------------ in process

@pytest.mark.django_db
@both_stores
def test_streamed_version_round_trips_signed_and_audited(ci, viewer, resnet, isolated_artifacts):
    data = tiny_onnx(inputs=4, classes=3)
    digest = hashlib.sha256(data).hexdigest()
    response = _put(ci, data, metadata={"sha256": digest, "git_commit": "abc1234", "tags": {"team": "vision"}},
                    HTTP_X_MLCP_FILENAME="r%C3%A9snet.onnx")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["number"], body["digest"], body["size"]) == (1, digest, len(data))
    assert body["artifact_name"] == "résnet.onnx"
    assert body["input_signature"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 4]}]
    assert (body["git_commit"], body["tags"], body["signature_source"]) == ("abc1234", {"team": "vision"}, "registry")
    bundle = viewer.get("/api/v1/models/resnet/versions/1/signature").getvalue().decode()
    assert signing.verify_bundle(bundle, digest).digest == digest
    assert viewer.get("/api/v1/models/resnet/versions/1/artifact").getvalue() == data
    assert AuditEvent.objects.filter(action="version.registered", version_number=1, actor="ci-user").count() == 1
    assert isolated_artifacts.blobs() == [digest]
    assert isolated_artifacts.staging() == []


@pytest.mark.django_db
def test_bytes_streamed_and_uploaded_multipart_are_stored_once(ci, resnet, stored_files):
    data = tiny_onnx()
    streamed, multipart = _put(ci, data).json(), upload(ci, "resnet", data).json()
    assert (streamed["number"], multipart["number"]) == (1, 2)
    assert streamed["digest"] == multipart["digest"]
    assert Blob.objects.count() == 1
    assert stored_files() == [f"sha256/{streamed['digest'][:2]}/{streamed['digest']}"]


@pytest.mark.django_db
def test_client_bundle_in_its_header_is_verified_against_trusted_keys(ci, resnet, settings, tmp_path):
    private, public = _keypair(tmp_path, "ci-release-2026")
    settings.MLCP_TRUSTED_KEY_FILES = [str(public)]
    data = tiny_onnx()
    bundle = base64.b64encode(_ci_sign(data, private, tmp_path)).decode()
    response = _put(ci, data, HTTP_X_MLCP_BUNDLE=bundle)
    assert response.status_code == 201, response.json()
    assert (response.json()["signature_source"], response.json()["signer"]) == ("client", "ci-release-2026")


@pytest.mark.django_db
@pytest.mark.parametrize("headers, status, code", [
    ({"content_type": "multipart/form-data; boundary=x"}, 415, "unsupported_media_type"),
    ({"content_type": "application/json"}, 415, "unsupported_media_type"),
    ({"CONTENT_LENGTH": ""}, 411, "length_required"),
    ({"CONTENT_LENGTH": "12abc"}, 400, "invalid_length"),
    ({"CONTENT_LENGTH": "\u00b2"}, 400, "invalid_length"),  # a digit to str.isdigit(), not to int()
    ({"metadata": "{not json"}, 400, "invalid_metadata"),
    ({"metadata": "[1, 2]"}, 400, "invalid_metadata"),
    # No database stores NaN or Infinity in JSON: once accepted, the version row failed after the bytes were kept.
    ({"metadata": '{"tags": {"a": NaN}}'}, 400, "invalid_metadata"),
    ({"metadata": '{"tags": {"a": 1e999}}'}, 400, "invalid_metadata"),
    ({"metadata": '{"tags": {"a": "\\ud800"}}'}, 400, "invalid_metadata"),
    # Deep enough to parse, but DRF encodes JSON fields again a few frames deeper: nesting is capped at 64.
    ({"metadata": '{"tags": ' + "[" * 950 + "]" * 950 + "}"}, 400, "invalid_metadata"),
    ({"metadata": {"ci_run_url": "http://["}}, 400, "invalid_input"),
    ({"metadata": {"tags": ["not", "an", "object"]}}, 400, "invalid_input"),
    ({"metadata": {"format": "pickle"}}, 400, "invalid_input"),
    ({"HTTP_X_MLCP_BUNDLE": "%%% not base64"}, 400, "invalid_bundle"),
    ({"metadata": {"sha256": "0" * 64}}, 409, "digest_mismatch"),
])
def test_bad_streamed_uploads_are_refused_with_a_stable_code_and_store_nothing(ci, resnet, stored_files, headers,
                                                                               status, code):
    response = _put(ci, tiny_onnx(), **headers)
    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
    assert ModelVersion.objects.count() == 0 and Blob.objects.count() == 0
    assert stored_files() == []


@pytest.mark.django_db
def test_content_length_over_the_upload_limit_is_refused_before_reading(ci, resnet, settings, stored_files):
    settings.MLCP_MAX_UPLOAD_BYTES = 1024
    response = _put(ci, tiny_onnx() + b"\0" * 2048)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert stored_files() == [] and ModelVersion.objects.count() == 0


@pytest.mark.django_db
def test_a_viewer_cannot_stream_a_version(viewer, resnet, stored_files):
    response = _put(viewer, tiny_onnx())
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert stored_files() == [] and ModelVersion.objects.count() == 0


@pytest.mark.django_db
def test_streaming_to_an_unknown_model_is_404(ci, stored_files):
    response = _put(ci, tiny_onnx())
    assert response.status_code == 404
    assert stored_files() == []


# -------------------------------------------------------- through a real server

@pytest.fixture
def ci_token(transactional_db):
    RegisteredModel.objects.create(name="resnet")
    return issue_token("ci-bot", Role.CI)


def _stream(base_url, token, path, **headers):
    with open(path, "rb") as fh:
        return requests.put(f"{base_url}{STREAM}", data=fh, timeout=900,
                            headers={"Authorization": f"Token {token}", "Content-Type": "application/octet-stream",
                                     "Content-Length": str(path.stat().st_size), **headers})


def _raw_put(base_url, token, head_lines: list[str], body: bytes, *, hang_up: bool = False) -> bytes:
    """Send a request's head and `body` as given, then close the sending side and return what the server
    answers, or (`hang_up`) close the connection at once."""
    url = urlparse(base_url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        head = [f"PUT {STREAM} HTTP/1.1", f"Host: {url.netloc}", f"Authorization: Token {token}", *head_lines]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        if hang_up:
            return b""
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(65536), b""))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@both_stores
def test_one_gib_streamed_upload_keeps_server_memory_constant(ci_token, tmp_path, isolated_artifacts):
    model_file = tmp_path / "large.onnx"
    write_large_onnx(model_file, GIB)
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    warm_up = tmp_path / "small.onnx"
    write_large_onnx(warm_up, 1024 * 1024)
    with gunicorn_server() as (base_url, master):
        worker = worker_pids(master.pid)[0]
        # A small upload first loads what any upload needs (the store's client, the ONNX walker, the threads).
        assert _stream(base_url, ci_token, warm_up).status_code == 201
        reset_rss_high_water(worker)
        before_kb = rss_kb(worker)
        response = _stream(base_url, ci_token, model_file, **{"X-Mlcp-Metadata": json.dumps({"sha256": digest})})
        peak_kb = rss_high_water_kb(worker)
    assert response.status_code == 201, response.text
    assert response.json()["digest"] == digest
    assert response.json()["size"] == model_file.stat().st_size >= GIB
    print(f"server worker during a {model_file.stat().st_size / GIB:.2f} GiB streamed upload: "
          f"{before_kb / 1024:.0f} MiB before, peak {peak_kb / 1024:.0f} MiB")
    assert peak_kb - before_kb < UPLOAD_GROWTH_LIMIT_KB
    assert peak_kb < WORKER_PEAK_LIMIT_KB[isolated_artifacts.kind]
    warm_up_digest = hashlib.sha256(warm_up.read_bytes()).hexdigest()
    assert sorted(isolated_artifacts.blobs()) == sorted([warm_up_digest, digest])
    assert isolated_artifacts.staging() == []


@pytest.mark.django_db(transaction=True)
@both_stores
def test_client_gone_mid_stream_leaves_no_version_and_no_bytes(ci_token, tmp_path, isolated_artifacts):
    model_file = tmp_path / "model.onnx"
    # Half of it is more than one S3 part: the store has a multipart upload in progress to abort.
    write_large_onnx(model_file, 24 * 1024 * 1024)
    data = model_file.read_bytes()
    with gunicorn_server() as (base_url, _):
        _raw_put(base_url, ci_token, ["Content-Type: application/octet-stream", f"Content-Length: {len(data)}"],
                 data[: len(data) // 2], hang_up=True)
        leftover = _wait_until_no_staging(isolated_artifacts)
        # The server is still healthy and the next upload works.
        small = tmp_path / "small.onnx"
        small.write_bytes(tiny_onnx())
        after = _stream(base_url, ci_token, small)
    assert leftover == []
    assert after.status_code == 201 and after.json()["number"] == 1
    assert ModelVersion.objects.count() == 1 and Blob.objects.count() == 1
    assert isolated_artifacts.blobs() == [after.json()["digest"]]


@pytest.mark.django_db(transaction=True)
@both_stores
def test_a_body_that_ends_before_its_content_length_is_refused_and_stores_nothing(ci_token, isolated_artifacts):
    data = tiny_onnx() * 1000
    with gunicorn_server() as (base_url, _):
        answer = _raw_put(base_url, ci_token, ["Content-Type: application/octet-stream",
                                               f"Content-Length: {len(data) + 10}"], data)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"code":"upload_interrupted"' in answer.replace(b" ", b"")
    assert ModelVersion.objects.count() == 0 and Blob.objects.count() == 0
    assert isolated_artifacts.files() == []


@pytest.mark.django_db(transaction=True)
def test_a_real_server_refuses_chunked_and_oversized_bodies_before_reading_them(ci_token, stored_files):
    with gunicorn_server(MLCP_MAX_UPLOAD_BYTES=str(64 * 1024 * 1024)) as (base_url, _):
        chunked = _raw_put(base_url, ci_token, ["Content-Type: application/octet-stream",
                                                "Transfer-Encoding: chunked"], b"4\r\nabcd\r\n0\r\n\r\n")
        # Declares 5 GiB and sends none of it: the answer comes from the header alone.
        oversized = _raw_put(base_url, ci_token, ["Content-Type: application/octet-stream",
                                                  f"Content-Length: {5 * GIB}"], b"")
    assert chunked.startswith(b"HTTP/1.1 411"), chunked[:200]
    assert b'"code":"length_required"' in chunked.replace(b" ", b"")
    assert oversized.startswith(b"HTTP/1.1 413"), oversized[:200]
    assert b'"code":"payload_too_large"' in oversized.replace(b" ", b"")
    assert stored_files() == [] and ModelVersion.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@filesystem_only
def test_disk_full_mid_stream_is_507_and_stores_nothing(ci_token, tmp_path, isolated_artifacts):
    """RLIMIT_FSIZE of 16 MiB on the server: the store's writer thread meets a real kernel write failure.

    The file is 16.5 MiB, so the write that fails is the body's last block: the
    server has read the whole body when it answers, and the client reads the answer.
    """
    model_file = tmp_path / "large.onnx"
    write_large_onnx(model_file, 16 * 1024 * 1024 + 512 * 1024)
    with gunicorn_server(file_size_limit=16 * 1024 * 1024) as (base_url, _):
        response = _stream(base_url, ci_token, model_file)
    assert response.status_code == 507, response.text
    assert response.json()["code"] == "storage_full"
    assert ModelVersion.objects.count() == 0 and Blob.objects.count() == 0
    assert isolated_artifacts.files() == []


@pytest.mark.django_db
def test_an_octet_stream_body_sent_to_another_endpoint_is_refused_unparsed(ci):
    # The body-size guard lets application/octet-stream through for the streamed upload; no other endpoint reads it.
    response = ci.generic("POST", "/api/v1/models/", b"x" * (2 * 1024 * 1024), content_type="application/octet-stream")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert not RegisteredModel.objects.exists()
