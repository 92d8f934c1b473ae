"""What verifying an artifact costs a download: counted in bytes read and whole-blob hashes, never timed.

A Range request trusts a check of the blob recorded within MLCP_VERIFY_TRUST_S,
re-hashes once when the last check is older, and a full download hashes what
it streams instead of reading the blob twice.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from registry import services
from registry.models import Blob
from registry.storage import default_store
from tests.factories import write_large_onnx

pytestmark = pytest.mark.django_db

LARGE = 64 * 1024 * 1024
TRUST_S = 3600
ARTIFACT = "/api/v1/models/resnet/versions/1/artifact"


class _CountingFile:
    def __init__(self, fh, reads):
        self._fh, self._reads = fh, reads

    def read(self, size=-1):
        data = self._fh.read(size)
        self._reads.bytes += len(data)
        return data

    def seek(self, *args):
        return self._fh.seek(*args)

    def close(self):
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


class StoreReads:
    bytes = 0
    whole_blob_hashes = 0


@pytest.fixture
def reads(monkeypatch):
    """Counts every byte read from the blob store, and every call of its whole-blob hash."""
    counted = StoreReads()
    store_class = type(default_store())
    real_open, real_hash = store_class.open, store_class.hash_stored

    def counting_open(store, digest, start=0, end=None):
        return _CountingFile(real_open(store, digest, start, end), counted)

    def counting_hash(store, digest):
        counted.whole_blob_hashes += 1
        return real_hash(store, digest)

    monkeypatch.setattr(store_class, "open", counting_open)
    monkeypatch.setattr(store_class, "hash_stored", counting_hash)
    return counted


@pytest.fixture
def large_version(resnet, tmp_path, settings):
    settings.MLCP_VERIFY_TRUST_S = TRUST_S
    source = tmp_path / "large.onnx"
    write_large_onnx(source, LARGE)
    staged = default_store().stage()
    with open(source, "rb") as fh:
        for chunk in iter(lambda: fh.read(8 * 1024 * 1024), b""):
            staged.write(chunk)
    return services.ingest_version(resnet, staged, "large.onnx", services.VersionMetadata(), actor="test")


def _last_verified(version, ago: timedelta | None):
    Blob.objects.filter(pk=version.digest).update(verified_at=None if ago is None else timezone.now() - ago)


def test_one_byte_range_trusts_a_recent_verification(viewer, large_version, reads):
    _last_verified(large_version, timedelta(seconds=TRUST_S - 60))
    response = viewer.get(ARTIFACT, HTTP_RANGE="bytes=0-0")
    assert response.status_code == 206
    assert len(b"".join(response.streaming_content)) == 1
    assert reads.whole_blob_hashes == 0
    assert reads.bytes == 1


@pytest.mark.parametrize("ago", [timedelta(seconds=TRUST_S + 1), None], ids=["stale", "never-verified"])
def test_one_byte_range_rehashes_once_without_a_recent_verification(viewer, large_version, reads, ago):
    _last_verified(large_version, ago)
    before = timezone.now()
    response = viewer.get(ARTIFACT, HTTP_RANGE="bytes=-1")
    assert response.status_code == 206
    assert len(b"".join(response.streaming_content)) == 1
    assert reads.whole_blob_hashes == 1
    assert reads.bytes == large_version.size + 1
    assert Blob.objects.get(pk=large_version.digest).verified_at >= before


def test_the_rehash_is_recorded_so_the_next_range_reads_one_byte(viewer, large_version, reads):
    _last_verified(large_version, timedelta(seconds=TRUST_S + 1))
    b"".join(viewer.get(ARTIFACT, HTTP_RANGE="bytes=0-0").streaming_content)
    reads.bytes = 0
    response = viewer.get(ARTIFACT, HTTP_RANGE="bytes=100-100")
    assert response.status_code == 206
    assert len(b"".join(response.streaming_content)) == 1
    assert reads.whole_blob_hashes == 1  # the first request's, not another
    assert reads.bytes == 1


def test_full_download_reads_the_blob_once_and_records_the_verification(viewer, large_version, reads):
    _last_verified(large_version, None)
    response = viewer.get(ARTIFACT)
    assert response.status_code == 200
    served = sum(len(chunk) for chunk in response.streaming_content)
    assert served == large_version.size
    assert reads.whole_blob_hashes == 0
    assert reads.bytes == large_version.size
    assert Blob.objects.get(pk=large_version.digest).verified_at is not None


def test_verify_endpoint_trusts_a_recent_verification(viewer, large_version, reads):
    _last_verified(large_version, timedelta(seconds=60))
    response = viewer.get("/api/v1/models/resnet/versions/1/verify")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert reads.bytes == 0


def test_verify_now_in_the_web_ui_trusts_a_recent_check_like_the_api(monkeypatch, db):
    """The UI's "verify now" goes through the same service: a viewer cannot force whole-blob re-reads."""
    from registry import services
    from registry.models import RegisteredModel
    from tests.factories import tiny_onnx

    model = RegisteredModel.objects.create(name="trusted")
    version = services.ingest_bytes(model, tiny_onnx(seed=5), "m.onnx", services.VersionMetadata(), actor="ci")
    hashes = []
    store_class = type(default_store())
    original = store_class.hash_stored
    monkeypatch.setattr(store_class, "hash_stored", lambda self, digest: hashes.append(digest) or original(self, digest))
    assert services.verify_version(version).ok and len(hashes) == 1  # never checked: hashed once, recorded
    version.blob.refresh_from_db()
    assert services.verify_version(version).ok and len(hashes) == 1  # recent check: trusted
