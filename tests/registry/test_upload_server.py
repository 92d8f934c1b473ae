"""Uploads through a real gunicorn server: constant memory, and nothing left by a failed upload, on both stores."""

import hashlib
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from requests_toolbelt import MultipartEncoder

from controlplane.accounts import issue_token
from controlplane.roles import Role
from registry.models import Blob, GoldenSet, ModelVersion, RegisteredModel
from tests.factories import tiny_onnx, write_large_onnx, write_lying_npz, write_onnx_with_huge_domain
from tests.support.artifacts import both_stores, filesystem_only
from tests.support.servers import reset_rss_high_water, rss_high_water_kb, rss_kb
from tests.support.webserver import gunicorn_server, worker_pids

pytestmark = pytest.mark.django_db(transaction=True)
GIB = 1024**3


@pytest.fixture
def ci_token(transactional_db):
    RegisteredModel.objects.create(name="resnet")
    return issue_token("ci-bot", Role.CI)


def _post(base_url, token, path: Path, *, part="artifact", route="versions", **fields):
    with open(path, "rb") as fh:
        encoder = MultipartEncoder({**fields, part: (path.name, fh, "application/octet-stream")})
        return requests.post(f"{base_url}/api/v1/models/resnet/{route}/", data=encoder, timeout=900,
                             headers={"Authorization": f"Token {token}", "Content-Type": encoder.content_type})


def _wait_until_no_staging(area, deadline_s: float = 60) -> list[str]:
    # The server finishes its side of an aborted request on its own schedule; wait for it, bounded.
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        left = area.staging()
        if not left:
            return []
        time.sleep(0.2)
    return left


# What one upload may add to a warmed-up worker, whatever its size: a chunk, an S3 part, parsing buffers.
UPLOAD_GROWTH_LIMIT_KB = 64 * 1024
# A worker's whole footprint during a 1 GiB upload. S3 adds boto3's client (about 35 MiB) to the filesystem
# store's figure; both are far below the upload's size, which is the point.
WORKER_PEAK_LIMIT_KB = {"filesystem": 200 * 1024, "s3": 256 * 1024}


@pytest.mark.slow
@both_stores
def test_one_gib_upload_keeps_server_memory_constant(ci_token, tmp_path, isolated_artifacts):
    model_file = tmp_path / "large.onnx"
    write_large_onnx(model_file, GIB)
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    warm_up = tmp_path / "small.onnx"
    write_large_onnx(warm_up, 1024 * 1024)
    with gunicorn_server() as (base_url, master):
        worker = worker_pids(master.pid)[0]
        # One small upload first loads what any upload needs (the store's client, the ONNX walker); then only
        # what the large one adds is counted.
        assert _post(base_url, ci_token, warm_up).status_code == 201
        reset_rss_high_water(worker)
        before_kb = rss_kb(worker)
        response = _post(base_url, ci_token, model_file, sha256=digest)
        peak_kb = rss_high_water_kb(worker)
    assert response.status_code == 201, response.text
    assert response.json()["digest"] == digest
    assert response.json()["size"] == model_file.stat().st_size >= GIB
    print(f"server worker during a {model_file.stat().st_size / GIB:.2f} GiB upload: {before_kb / 1024:.0f} MiB "
          f"before, peak {peak_kb / 1024:.0f} MiB")
    assert peak_kb - before_kb < UPLOAD_GROWTH_LIMIT_KB
    assert peak_kb < WORKER_PEAK_LIMIT_KB[isolated_artifacts.kind]
    warm_up_digest = hashlib.sha256(warm_up.read_bytes()).hexdigest()
    assert sorted(isolated_artifacts.blobs()) == sorted([warm_up_digest, digest])
    assert isolated_artifacts.staging() == []


@both_stores
def test_client_gone_mid_upload_leaves_no_version_and_no_bytes(ci_token, tmp_path, isolated_artifacts):
    model_file = tmp_path / "model.onnx"
    # Half of it is more than one S3 part: the store has a multipart upload in progress to abort.
    write_large_onnx(model_file, 24 * 1024 * 1024)
    encoder = MultipartEncoder({"artifact": ("model.onnx", model_file.read_bytes(), "application/octet-stream")})
    body = encoder.to_string()
    with gunicorn_server() as (base_url, _):
        url = urlparse(base_url)
        with socket.create_connection((url.hostname, url.port)) as sock:
            sock.sendall((f"POST /api/v1/models/resnet/versions/ HTTP/1.1\r\nHost: {url.netloc}\r\n"
                          f"Authorization: Token {ci_token}\r\nContent-Type: {encoder.content_type}\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n").encode())
            sock.sendall(body[: len(body) // 2])
        leftover = _wait_until_no_staging(isolated_artifacts)
        # The server is still healthy and the next upload works.
        small = tmp_path / "small.onnx"
        small.write_bytes(tiny_onnx())
        after = _post(base_url, ci_token, small)
    assert leftover == []
    assert after.status_code == 201 and after.json()["number"] == 1
    assert ModelVersion.objects.count() == 1
    assert Blob.objects.count() == 1
    assert isolated_artifacts.blobs() == [after.json()["digest"]]


@filesystem_only
def test_disk_full_is_507_and_stores_nothing(ci_token, tmp_path, isolated_artifacts):
    """The server runs with RLIMIT_FSIZE of 16 MiB: a real kernel write failure stands in for a full disk."""
    model_file = tmp_path / "large.onnx"
    write_large_onnx(model_file, 32 * 1024 * 1024)
    with gunicorn_server(file_size_limit=16 * 1024 * 1024) as (base_url, _):
        response = _post(base_url, ci_token, model_file)
    assert response.status_code == 507
    assert response.json()["code"] == "storage_full"
    assert ModelVersion.objects.count() == 0
    assert Blob.objects.count() == 0
    assert isolated_artifacts.files() == []


@pytest.mark.slow
def test_one_mb_npz_declaring_two_gb_is_refused_with_server_memory_under_200_mb(ci_token, tmp_path,
                                                                                isolated_artifacts):
    golden_file = tmp_path / "bomb.npz"
    write_lying_npz(golden_file, declared_bytes=2 * GIB, real_bytes=GIB)
    assert golden_file.stat().st_size < 2 * 1024 * 1024
    with gunicorn_server() as (base_url, master):
        response = _post(base_url, ci_token, golden_file, part="golden_set", route="golden-sets")
        peak_kb = rss_high_water_kb(worker_pids(master.pid)[0])
    print(f"server worker peak RSS for a {golden_file.stat().st_size / 1024**2:.1f} MB .npz declaring 2 GiB: "
          f"{peak_kb / 1024:.0f} MiB")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "golden_set_too_large"
    assert GoldenSet.objects.count() == 0 and Blob.objects.count() == 0
    assert peak_kb < 200 * 1024


@pytest.mark.slow
def test_256_mb_onnx_with_a_huge_domain_string_is_refused_with_server_memory_under_200_mb(ci_token, tmp_path,
                                                                                         isolated_artifacts):
    model_file = tmp_path / "huge-domain.onnx"
    write_onnx_with_huge_domain(model_file, 256 * 1024 * 1024)
    with gunicorn_server() as (base_url, master):
        response = _post(base_url, ci_token, model_file)
        peak_kb = rss_high_water_kb(worker_pids(master.pid)[0])
    print(f"server worker peak RSS for a {model_file.stat().st_size / 1024**2:.0f} MiB ONNX with a 256 MiB "
          f"opset domain: {peak_kb / 1024:.0f} MiB")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "onnx_field_too_large"
    assert ModelVersion.objects.count() == 0 and Blob.objects.count() == 0
    assert isolated_artifacts.blobs() == []
    assert peak_kb < 200 * 1024
