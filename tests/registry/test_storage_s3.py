"""The S3 store against moto's server: parts sent while hashing, nothing visible until committed, nothing left
by a failed upload, one copy of the same bytes, ranges, verified streams, and domain errors for every failure."""

import base64
import hashlib
import io

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from django.core.exceptions import ImproperlyConfigured

from controlplane.errors import IntegrityFailure, NotFound, PayloadTooLarge, StorageFull, UpstreamUnavailable
from registry import storage_s3
from registry.storage import CHUNK_SIZE, blob_key, default_store
from registry.storage_s3 import PART_SIZE, S3Store
from tests.support.artifacts import s3_only
from tests.support.servers import free_port

pytestmark = s3_only

MIB = 1024 * 1024


def _bytes(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    return (block * (size // len(block) + 1))[:size]


def _write(staged, data: bytes) -> None:
    for start in range(0, len(data), CHUNK_SIZE):
        staged.write(data[start:start + CHUNK_SIZE])


def _parts_in_progress(area) -> int:
    uploads = area.client.list_multipart_uploads(Bucket=area.bucket, Prefix=f"{area.prefix}/").get("Uploads", [])
    return sum(len(area.client.list_parts(Bucket=area.bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
               for u in uploads)


def _staged_with_other_bytes_under_its_staging_key(area, data: bytes):
    staged = default_store().stage()
    _write(staged, data)
    staged.finish()
    area.client.put_object(Bucket=area.bucket, Key=staged.key, Body=b"other bytes")
    return staged


def _without_copy_checksums(store, monkeypatch):
    # S3-compatible stores that predate additional checksums answer CopyObject without one.
    real_copy = store.client.copy_object

    def copy_object(**params):
        answer = real_copy(**params)
        answer.get("CopyObjectResult", {}).pop("ChecksumSHA256", None)
        return answer

    monkeypatch.setattr(store.client, "copy_object", copy_object)


def test_the_default_store_is_s3_when_mlcp_artifact_store_names_a_bucket(isolated_artifacts):
    store = default_store()
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == (isolated_artifacts.bucket, isolated_artifacts.prefix)


def test_a_large_blob_is_sent_part_by_part_while_it_is_hashed_and_appears_only_when_committed(isolated_artifacts):
    data = _bytes(2 * PART_SIZE + 3 * MIB)
    staged = default_store().stage()
    _write(staged, data[:PART_SIZE + MIB])
    assert _parts_in_progress(isolated_artifacts) == 1  # one part sent; at most one part held in memory
    _write(staged, data[PART_SIZE + MIB:])
    assert _parts_in_progress(isolated_artifacts) == 2
    assert staged.finish() == hashlib.sha256(data).hexdigest()
    assert isolated_artifacts.blobs() == []  # finished is not visible
    staged.commit()
    assert isolated_artifacts.files() == [blob_key(staged.digest)]
    assert isolated_artifacts.read(staged.digest) == data


def test_a_multipart_blob_is_copied_into_place_with_s3s_own_sha256_of_it(isolated_artifacts):
    digest = default_store().put_bytes(_bytes(PART_SIZE + 1))
    head = isolated_artifacts.client.head_object(Bucket=isolated_artifacts.bucket, ChecksumMode="ENABLED",
                                                 Key=f"{isolated_artifacts.prefix}/{blob_key(digest)}")
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == digest


def test_a_one_part_blob_is_put_with_its_sha256_as_the_checksum_s3_verifies():
    client = boto3.session.Session().client("s3", region_name="us-east-1")
    store = S3Store(client, "bucket", "prefix")
    digest = hashlib.sha256(b"bytes").hexdigest()
    with Stubber(client) as stub:
        stub.add_client_error("head_object", "404", http_status_code=404)
        stub.add_response("put_object", {}, expected_params={
            "Bucket": "bucket", "Key": f"prefix/{blob_key(digest)}", "Body": b"bytes", "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(digest)).decode()})
        assert store.put_bytes(b"bytes") == digest
        stub.assert_no_pending_responses()


def test_a_discarded_upload_leaves_no_object_and_no_multipart_upload(isolated_artifacts):
    staged = default_store().stage()
    _write(staged, _bytes(PART_SIZE + 2 * MIB))
    assert isolated_artifacts.staging() != []
    staged.discard()
    assert isolated_artifacts.files() == []


def test_a_finished_upload_that_is_never_committed_is_removed_by_discard(isolated_artifacts):
    staged = default_store().stage()
    _write(staged, _bytes(PART_SIZE + 2 * MIB))
    staged.finish()
    staged.discard()
    assert isolated_artifacts.files() == []


def test_an_upload_over_the_limit_is_aborted(isolated_artifacts):
    staged = default_store().stage(max_bytes=PART_SIZE + MIB)
    with pytest.raises(PayloadTooLarge):
        _write(staged, _bytes(PART_SIZE + 2 * MIB))
    assert isolated_artifacts.files() == []


@pytest.mark.parametrize("size", [1000, PART_SIZE + 1], ids=["one-part", "multipart"])
def test_the_same_bytes_stored_twice_are_kept_once(isolated_artifacts, size):
    store = default_store()
    data = _bytes(size)
    assert store.put_bytes(data) == store.put_bytes(data)
    assert isolated_artifacts.files() == [blob_key(hashlib.sha256(data).hexdigest())]


def test_staged_bytes_can_be_read_back_before_they_are_committed(isolated_artifacts):
    for data in (_bytes(1000), _bytes(PART_SIZE + 5 * MIB, seed=1)):
        staged = default_store().stage()
        _write(staged, data)
        staged.finish()
        with staged.open() as fh:
            assert fh.read(10) == data[:10]
            fh.seek(-7, io.SEEK_END)
            assert fh.read() == data[-7:]
        staged.discard()
    assert isolated_artifacts.files() == []


def test_a_copy_whose_checksum_is_not_the_digest_is_refused_and_removed(isolated_artifacts):
    # Other bytes under the staging key stand in for corruption between upload and copy.
    staged = _staged_with_other_bytes_under_its_staging_key(isolated_artifacts, _bytes(PART_SIZE + MIB))
    with pytest.raises(IntegrityFailure):
        staged.commit()
    staged.discard()
    assert isolated_artifacts.files() == []


def test_a_copy_answered_without_a_checksum_is_read_back_and_refused_when_it_holds_other_bytes(isolated_artifacts,
                                                                                                monkeypatch):
    staged = _staged_with_other_bytes_under_its_staging_key(isolated_artifacts, _bytes(PART_SIZE + MIB))
    _without_copy_checksums(default_store(), monkeypatch)
    with pytest.raises(IntegrityFailure):
        staged.commit()
    staged.discard()
    assert isolated_artifacts.files() == []


def test_a_copy_answered_without_a_checksum_is_kept_when_it_hashes_to_the_digest(isolated_artifacts, monkeypatch):
    data = _bytes(PART_SIZE + MIB)
    _without_copy_checksums(default_store(), monkeypatch)
    digest = default_store().put_bytes(data)
    assert isolated_artifacts.read(digest) == data


def test_a_staging_object_that_cannot_be_removed_after_the_copy_does_not_fail_the_commit(isolated_artifacts,
                                                                                          monkeypatch):
    store = default_store()
    data = _bytes(PART_SIZE + MIB, seed=3)
    staged = store.stage()
    _write(staged, data)
    staged.finish()

    def unreachable(**params):
        raise EndpointConnectionError(endpoint_url="http://s3.internal:9000")

    monkeypatch.setattr(store.client, "delete_object", unreachable)
    staged.commit()
    staged.discard()  # what a caller's error path does; the committed blob stays
    monkeypatch.undo()
    assert isolated_artifacts.read(staged.digest) == data
    assert len(isolated_artifacts.staging()) == 1  # left for the bucket's lifecycle rule


@pytest.mark.parametrize("size", [1000, PART_SIZE + 1], ids=["one-part", "multipart"])
def test_a_blob_s3_holds_with_its_sha256_is_not_stored_again(isolated_artifacts, monkeypatch, size):
    store = default_store()
    data = _bytes(size)
    store.put_bytes(data)

    def refuse(**params):
        raise AssertionError("the same bytes were written again")

    monkeypatch.setattr(store.client, "put_object", refuse)
    monkeypatch.setattr(store.client, "copy_object", refuse)
    assert store.put_bytes(data) == hashlib.sha256(data).hexdigest()


def test_a_blob_over_the_copy_limit_is_copied_in_parts(isolated_artifacts, monkeypatch):
    monkeypatch.setattr(storage_s3, "COPY_LIMIT", 10 * MIB)
    monkeypatch.setattr(storage_s3, "COPY_PART_SIZE", 5 * MIB)
    data = _bytes(13 * MIB)
    digest = default_store().put_bytes(data)
    assert isolated_artifacts.read(digest) == data
    assert isolated_artifacts.files() == [blob_key(digest)]


def test_range_reads_ask_s3_for_exactly_the_range(isolated_artifacts):
    data = _bytes(PART_SIZE + 3 * MIB)
    store = default_store()
    digest = store.put_bytes(data)
    start, end = PART_SIZE - 10, PART_SIZE + 2 * MIB
    assert b"".join(store.iter_range(digest, start, end)) == data[start:end + 1]
    assert b"".join(store.iter_range(digest, len(data) - 5)) == data[-5:]


def test_verified_streaming_withholds_the_last_chunk_of_altered_bytes(isolated_artifacts):
    data = _bytes(3 * CHUNK_SIZE)
    store = default_store()
    digest = store.put_bytes(data)
    isolated_artifacts.overwrite(digest, data[:-1] + b"\x00")
    received = bytearray()
    with pytest.raises(IntegrityFailure) as failure:
        for chunk in store.iter_verified(digest):
            received += chunk
    assert 0 < len(received) < len(data)
    assert failure.value.context["actual"] == hashlib.sha256(data[:-1] + b"\x00").hexdigest()
    assert store.hash_stored(digest) != digest
    with pytest.raises(IntegrityFailure):
        store.read_verified(digest)


def test_a_missing_blob_is_not_found_before_any_byte(isolated_artifacts):
    store = default_store()
    digest = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(digest)
    with pytest.raises(NotFound, match=digest):
        store.iter_verified(digest)
    with pytest.raises(NotFound):
        store.iter_range(digest, 0, 0)
    store.delete(digest)  # deleting what is not there is fine


def test_the_readiness_check_writes_and_leaves_nothing(isolated_artifacts):
    default_store().check_writable()
    assert isolated_artifacts.files() == []


def test_an_unreachable_store_is_a_clear_503_error_naming_no_host():
    client = boto3.session.Session().client(
        "s3", endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=Config(connect_timeout=1, retries={"mode": "standard", "max_attempts": 1}))
    store = S3Store(client, "mlcp-test-artifacts", "nowhere")
    digest = hashlib.sha256(b"x").hexdigest()
    staged = store.stage()
    _write(staged, _bytes(2 * MIB))
    for attempt in (staged.commit, lambda: store.iter_verified(digest), store.check_writable,
                    lambda: store.exists(digest)):
        with pytest.raises(UpstreamUnavailable) as failure:
            attempt()
        assert failure.value.code == "artifact_store_unavailable" and failure.value.http_status == 503
        assert "127.0.0.1" not in failure.value.detail
    staged.discard()  # nothing to undo there, and no error on top of the first


def test_a_full_store_is_storage_full():
    client = boto3.session.Session().client("s3", region_name="us-east-1")
    store = S3Store(client, "bucket", "prefix")
    with Stubber(client) as stub:
        stub.add_client_error("head_object", "404", http_status_code=404)
        stub.add_client_error("put_object", "QuotaExceeded", http_status_code=403)
        staged = store.stage()
        staged.write(b"bytes")
        with pytest.raises(StorageFull):
            staged.commit()


@pytest.mark.parametrize("url", ["s3://", "gs://bucket/prefix"])
def test_an_artifact_store_url_that_is_not_a_bucket_is_refused(url):
    with pytest.raises(ImproperlyConfigured):
        S3Store.from_url(url)
