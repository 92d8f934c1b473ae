"""Bytes a failed upload committed stay, unreachable, until the sweep removes them after a grace period.

A failed upload cannot delete them itself: another upload of the same bytes may
be about to register a version that refers to them.
"""

import hashlib
import io
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from controlplane.errors import Conflict, InvalidInput
from registry import services
from registry.models import Blob, ModelVersion
from registry.storage import blob_key, default_store
from registry.tasks import remove_unreferenced_blobs, verify_blobs, verify_stored_blobs
from tests.factories import tiny_onnx, upload
from tests.support.artifacts import both_stores

pytestmark = both_stores

HOUR = timedelta(hours=1)


def _ingest(model, data, **meta):
    staged = default_store().stage()
    staged.write(data)
    return services.ingest_version(model, staged, "model.onnx", services.VersionMetadata(**meta), actor="ci")


def _failed_upload(model, data) -> str:
    """Bytes committed by an upload that then failed (its parent does not exist); their digest."""
    with pytest.raises(InvalidInput, match="parent version 99"):
        _ingest(model, data, parent_number=99)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.django_db(transaction=True)
def test_a_failed_upload_keeps_the_bytes_a_concurrent_upload_of_them_is_registering(resnet, isolated_artifacts,
                                                                                    monkeypatch):
    data = tiny_onnx(seed=7)
    real_create = services._create_version_row
    b_stored, a_failed = threading.Event(), threading.Event()
    b = {}

    def create_pausing_b(*args, **kwargs):
        if threading.current_thread().name == "B":
            b_stored.set()  # B has stored its bytes (or found them stored) and not written its row yet
            a_failed.wait()
        return real_create(*args, **kwargs)

    monkeypatch.setattr(services, "_create_version_row", create_pausing_b)

    def upload_b():
        try:
            b["version"] = _ingest(resnet, data)
        except BaseException as exc:
            b["error"] = exc
        finally:
            b_stored.set()  # whatever happened, the test goes on
            connections.close_all()

    thread_b = threading.Thread(target=upload_b, name="B")
    thread_b.start()
    b_stored.wait()
    try:
        _failed_upload(resnet, data)  # A: the same bytes
    finally:
        a_failed.set()
        thread_b.join()

    assert "error" not in b, b.get("error")
    assert ModelVersion.objects.get() == b["version"]
    assert default_store().read_verified(b["version"].digest) == data


@pytest.mark.django_db
def test_a_failed_upload_shows_nothing_and_its_bytes_are_swept_once_the_grace_period_has_passed(
        ci, viewer, resnet, isolated_artifacts, settings):
    response = upload(ci, "resnet", tiny_onnx(), parent="99")
    assert response.status_code == 400 and response.json()["code"] == "unknown_parent"
    assert viewer.get("/api/v1/models/resnet/versions/").json()["count"] == 0
    digest = Blob.objects.get().digest
    claimed = Blob.objects.get().claimed_at
    grace = timedelta(seconds=settings.MLCP_ORPHAN_BLOB_GRACE_S)

    assert remove_unreferenced_blobs(clock=lambda: claimed + grace - timedelta(seconds=1)) == []
    assert isolated_artifacts.blobs() == [digest]

    assert remove_unreferenced_blobs(clock=lambda: claimed + grace + timedelta(seconds=1)) == [digest]
    assert isolated_artifacts.files() == []
    assert not Blob.objects.exists()


@pytest.mark.django_db
def test_an_upload_that_claims_an_unreferenced_blob_keeps_it_from_the_sweep(resnet, isolated_artifacts):
    data = tiny_onnx()
    digest = _failed_upload(resnet, data)
    Blob.objects.update(claimed_at=timezone.now() - 2 * HOUR)  # left two hours ago
    services.claim_blob(digest, len(data))  # another upload of the same bytes, about to commit them

    assert remove_unreferenced_blobs(grace_s=3600) == []
    assert isolated_artifacts.blobs() == [digest]


@pytest.mark.django_db
def test_the_sweep_leaves_blobs_that_versions_refer_to(resnet, isolated_artifacts):
    version = _ingest(resnet, tiny_onnx())
    assert remove_unreferenced_blobs(clock=lambda: timezone.now() + 100 * HOUR) == []
    assert isolated_artifacts.blobs() == [version.digest]


@pytest.mark.django_db
def test_bytes_the_sweep_removed_are_stored_again_by_the_next_upload_of_them(resnet, isolated_artifacts):
    data = tiny_onnx()
    digest = _failed_upload(resnet, data)
    assert remove_unreferenced_blobs(clock=lambda: timezone.now() + 2 * HOUR) == [digest]

    version = _ingest(resnet, data)
    assert version.digest == digest
    assert default_store().read_verified(digest) == data


@pytest.mark.django_db
def test_a_version_is_not_registered_when_its_bytes_were_swept_before_its_row_was_written(resnet, isolated_artifacts,
                                                                                           monkeypatch):
    # Only when storing and registering are further apart than MLCP_ORPHAN_BLOB_GRACE_S.
    real_create = services._create_version_row

    def swept_meanwhile(model, digest, *args, **kwargs):
        remove_unreferenced_blobs(clock=lambda: timezone.now() + 2 * HOUR)
        return real_create(model, digest, *args, **kwargs)

    monkeypatch.setattr(services, "_create_version_row", swept_meanwhile)
    with pytest.raises(Conflict) as refused:
        _ingest(resnet, tiny_onnx())
    assert refused.value.code == "upload_expired"
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_verifyblobs_removes_unreferenced_blobs_and_never_reports_them_missing(resnet, isolated_artifacts):
    digest = _failed_upload(resnet, tiny_onnx())
    default_store().delete(digest)  # as if the store had failed while committing them

    assert verify_stored_blobs().ok  # within the grace period: not checked, not removed
    assert Blob.objects.filter(pk=digest).exists()

    Blob.objects.update(claimed_at=timezone.now() - 2 * HOUR)
    out = io.StringIO()
    call_command("verifyblobs", stdout=out)
    assert f"sha256:{digest}: removed (unreferenced)" in out.getvalue()
    assert "0 blobs verified: 0 tampered, 0 missing; 1 unreferenced removed" in out.getvalue()
    assert not Blob.objects.exists()


@pytest.mark.django_db
def test_the_periodic_task_removes_unreferenced_blobs_past_their_grace(resnet, isolated_artifacts):
    digest = _failed_upload(resnet, tiny_onnx())
    Blob.objects.update(claimed_at=timezone.now() - 2 * HOUR)
    assert verify_blobs.apply().get() == {"checked": 0, "tampered": [], "missing": [], "removed": [digest]}
    assert blob_key(digest) not in isolated_artifacts.files()
