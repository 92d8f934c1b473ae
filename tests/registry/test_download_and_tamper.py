"""Downloads stream the exact bytes with their digest; altered bytes in storage are caught."""

import hashlib
import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from controlplane.celery import app
from controlplane.errors import IntegrityFailure
from registry.models import AuditEvent, Blob
from registry.storage import CHUNK_SIZE, default_store
from registry.tasks import verify_blobs
from tests.factories import tiny_onnx, upload, write_large_onnx
from tests.support.artifacts import both_stores

pytestmark = [pytest.mark.django_db, both_stores]


@pytest.fixture
def version(ci, resnet):
    data = tiny_onnx()
    return upload(ci, "resnet", data).json() | {"bytes": data}


@pytest.fixture
def flip_one_byte(isolated_artifacts):
    """Alters one stored byte behind the registry's back, in whichever store holds the blob."""
    def flip(digest: str) -> None:
        raw = bytearray(isolated_artifacts.read(digest))
        raw[len(raw) // 2] ^= 0x01
        isolated_artifacts.overwrite(digest, bytes(raw))
    return flip


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


def test_range_past_the_end_of_a_truncated_blob_is_409_artifact_tampered(viewer, version, isolated_artifacts):
    Blob.objects.filter(pk=version["digest"]).update(verified_at=timezone.now())  # a recent check vouches for it
    isolated_artifacts.overwrite(version["digest"], version["bytes"][:10])
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact", HTTP_RANGE="bytes=20-29")
    assert response.status_code == 409
    assert response.json()["code"] == "artifact_tampered"


def test_verify_endpoint_reports_an_intact_version(viewer, version):
    response = viewer.get("/api/v1/models/resnet/versions/1/verify")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response.json()["signer"] == "mlcp-registry"


def _received_until_failure(response) -> tuple[bytes, IntegrityFailure | None]:
    """What a client gets of a streamed body: the chunks sent before the server aborted, and why it did."""
    received = bytearray()
    try:
        for chunk in response.streaming_content:
            received += chunk
    except IntegrityFailure as exc:
        return bytes(received), exc
    return bytes(received), None


def test_full_download_of_altered_bytes_fails_short_and_marks_the_blob(flip_one_byte, viewer, version):
    flip_one_byte(version["digest"])
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact")
    received, failure = _received_until_failure(response)
    assert failure is not None and failure.code == "integrity_failure"
    assert len(received) < len(version["bytes"])
    assert Blob.objects.get(pk=version["digest"]).is_tampered
    event = AuditEvent.objects.get(action="blob.tampered")
    assert event.detail["digest"] == version["digest"] and event.detail["versions"] == ["resnet:1"]


def test_multi_chunk_download_of_altered_bytes_withholds_the_last_chunk(flip_one_byte, viewer, ci, resnet,
                                                                        tmp_path):
    source = tmp_path / "three-chunks.onnx"
    write_large_onnx(source, 3 * CHUNK_SIZE)
    data = source.read_bytes()
    assert upload(ci, "resnet", data).status_code == 201
    flip_one_byte(hashlib.sha256(data).hexdigest())
    received, failure = _received_until_failure(viewer.get("/api/v1/models/resnet/versions/1/artifact"))
    assert failure is not None
    assert 0 < len(received) < len(data)


def test_tampered_blob_is_refused_on_download_naming_version_and_digest(flip_one_byte, viewer, version):
    flip_one_byte(version["digest"])
    _received_until_failure(viewer.get("/api/v1/models/resnet/versions/1/artifact"))
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "artifact_tampered"
    assert "resnet:1" in body["detail"] and version["digest"] in body["detail"]


def test_range_on_altered_bytes_without_a_recent_verification_rehashes_and_refuses(flip_one_byte, viewer, version):
    flip_one_byte(version["digest"])
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact", HTTP_RANGE="bytes=0-0")
    assert response.status_code == 409
    assert response.json()["code"] == "artifact_tampered"
    assert Blob.objects.get(pk=version["digest"]).is_tampered


def test_verifyblobs_catches_tampering_that_a_recent_verification_hides_then_range_is_refused(flip_one_byte, viewer,
                                                                                              version):
    Blob.objects.filter(pk=version["digest"]).update(verified_at=timezone.now())
    flip_one_byte(version["digest"])
    assert viewer.get("/api/v1/models/resnet/versions/1/artifact", HTTP_RANGE="bytes=0-0").status_code == 206
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="1 tampered"):
        call_command("verifyblobs", stdout=out, stderr=err)
    assert f"[1/1] sha256:{version['digest']}" in err.getvalue() and "tampered" in err.getvalue()
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact", HTTP_RANGE="bytes=0-0")
    assert response.status_code == 409
    assert response.json()["code"] == "artifact_tampered"


def test_verifyblobs_passes_intact_blobs_and_records_the_check(version):
    out = io.StringIO()
    call_command("verifyblobs", stdout=out)
    assert "[1/1]" in out.getvalue() and "1 blobs verified: 0 tampered, 0 missing" in out.getvalue()
    assert Blob.objects.get(pk=version["digest"]).verified_at is not None


def test_verifyblobs_older_than_skips_blobs_checked_since(flip_one_byte, version):
    Blob.objects.filter(pk=version["digest"]).update(verified_at=timezone.now() - timedelta(seconds=30))
    flip_one_byte(version["digest"])
    out = io.StringIO()
    call_command("verifyblobs", "--older-than", "3600", stdout=out)
    assert "0 blobs verified" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("verifyblobs", "--older-than", "10", stdout=io.StringIO(), stderr=io.StringIO())


def test_restored_bytes_are_served_again_after_verifyblobs(flip_one_byte, viewer, version, isolated_artifacts):
    flip_one_byte(version["digest"])
    with pytest.raises(CommandError):
        call_command("verifyblobs", stdout=io.StringIO(), stderr=io.StringIO())
    isolated_artifacts.overwrite(version["digest"], version["bytes"])
    call_command("verifyblobs", stdout=io.StringIO())
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact")
    assert b"".join(response.streaming_content) == version["bytes"]
    assert AuditEvent.objects.filter(action="blob.restored").count() == 1


def test_periodic_task_marks_tampered_blobs(flip_one_byte, version):
    flip_one_byte(version["digest"])
    result = verify_blobs.apply().get()
    assert result == {"checked": 1, "tampered": [version["digest"]], "missing": [], "removed": []}
    assert Blob.objects.get(pk=version["digest"]).is_tampered


def test_beat_runs_the_periodic_verification_at_the_configured_interval(settings):
    app.finalize()
    entry = app.conf.beat_schedule["verify-blobs"]
    assert entry["task"] == "registry.tasks.verify_blobs"
    assert entry["schedule"] == settings.MLCP_VERIFY_BLOBS_EVERY_S


def test_tampered_blob_fails_the_verify_endpoint(flip_one_byte, viewer, version, isolated_artifacts):
    flip_one_byte(version["digest"])
    response = viewer.get("/api/v1/models/resnet/versions/1/verify")
    assert response.status_code == 409
    assert response.json()["code"] == "artifact_tampered"
    actual = hashlib.sha256(isolated_artifacts.read(version["digest"])).hexdigest()
    assert actual in response.json()["detail"]


def test_missing_blob_is_a_clear_404(viewer, version):
    default_store().delete(version["digest"])
    response = viewer.get("/api/v1/models/resnet/versions/1/artifact")
    assert response.status_code == 404
    assert version["digest"] in response.json()["detail"]
