"""What both artifact stores do alike when the bytes at a content address are not what was stored."""

import hashlib

import pytest

from controlplane.errors import IntegrityFailure
from registry.storage import blob_key, default_store
from registry.storage_s3 import PART_SIZE
from tests.support.artifacts import both_stores

pytestmark = both_stores

MIB = 1024 * 1024


def _bytes(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    return (block * (size // len(block) + 1))[:size]


@pytest.mark.parametrize("size", [1000, PART_SIZE + 1], ids=["one-part", "multipart"])
def test_storing_the_right_bytes_again_replaces_other_bytes_found_at_their_address(isolated_artifacts, size):
    store = default_store()
    data = _bytes(size)
    digest = store.put_bytes(data)
    isolated_artifacts.overwrite(digest, b"planted")
    assert store.put_bytes(data) == digest
    assert isolated_artifacts.read(digest) == data
    assert isolated_artifacts.files() == [blob_key(digest)]


def test_a_range_that_starts_past_the_stored_end_is_an_integrity_failure(isolated_artifacts):
    store = default_store()
    data = _bytes(1000)
    digest = store.put_bytes(data)
    isolated_artifacts.overwrite(digest, data[:100])  # cut short behind the registry's back
    with pytest.raises(IntegrityFailure) as failure:
        store.iter_range(digest, 500, 999)
    assert failure.value.code == "artifact_tampered" and failure.value.context["position"] == 500


def test_a_range_that_runs_past_the_stored_end_fails_instead_of_ending_short(isolated_artifacts):
    store = default_store()
    data = _bytes(1000)
    digest = store.put_bytes(data)
    isolated_artifacts.overwrite(digest, data[:600])
    with pytest.raises(IntegrityFailure) as failure:
        b"".join(store.iter_range(digest, 500, 999))
    assert failure.value.code == "artifact_tampered" and failure.value.context["position"] == 600
