"""Downloads stream the exact bytes with their digest; altered bytes in storage are caught."""

import hashlib

import pytest

from registry.storage import default_store
from tests.factories import tiny_onnx, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(ci, resnet):
    data = tiny_onnx()
    return upload(ci, "resnet", data).json() | {"bytes": data}


def _flip_one_byte(digest: str) -> None:
    path = default_store().path_for(digest)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def test_download_streams_the_bytes_with_their_digest(viewer, version):
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body == version["bytes"]
    assert response["X-Mlcp-Sha256"] == version["digest"]
    assert response["ETag"] == f'"sha256:{version["digest"]}"'
    assert response["Content-Length"] == str(len(body))


def test_range_request_returns_206_with_the_slice(viewer, version):
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact", HTTP_RANGE="bytes=10-19")
    assert response.status_code == 206
    assert b"".join(response.streaming_content) == version["bytes"][10:20]
    assert response["Content-Range"] == f"bytes 10-19/{len(version['bytes'])}"


def test_suffix_range_returns_the_tail(viewer, version):
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact", HTTP_RANGE="bytes=-5")
    assert b"".join(response.streaming_content) == version["bytes"][-5:]


def test_unsatisfiable_range_is_416(viewer, version):
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact", HTTP_RANGE="bytes=999999-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(version['bytes'])}"


def test_verify_endpoint_reports_an_intact_version(viewer, version):
    response = viewer.get("/api/v1/models/resnet/versions/1/verify")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response.json()["signer"] == "mlcp-registry"


def test_tampered_blob_is_refused_on_download_naming_version_and_digest(viewer, version):
    _flip_one_byte(version["digest"])
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "artifact_tampered"
    assert "resnet:1" in body["detail"] and version["digest"] in body["detail"]


def test_tampered_blob_fails_the_verify_endpoint(viewer, version):
    _flip_one_byte(version["digest"])
    response = viewer.get("/api/v1/models/resnet/versions/1/verify")
    assert response.status_code == 409
    assert response.json()["code"] == "artifact_tampered"
    actual = hashlib.sha256(default_store().path_for(version["digest"]).read_bytes()).hexdigest()
    assert actual in response.json()["detail"]


def test_missing_blob_is_a_clear_404(viewer, version):
    default_store().delete(version["digest"])
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact")
    assert response.status_code == 404
    assert version["digest"] in response.json()["detail"]
