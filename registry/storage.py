"""Content-addressed blob storage on a local filesystem.

Bytes are staged in a temporary file while they are hashed, fsynced, then
renamed to `sha256/<ab>/<digest>`; the same bytes stored twice are kept once.
Memory use is one chunk, whatever the size of the blob.
"""

import errno
import hashlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator

from controlplane.errors import IntegrityFailure, NotFound, PayloadTooLarge, StorageFull

CHUNK_SIZE = 1024 * 1024
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class StagedBlob:
    """A blob being written: hashed as it arrives, invisible until committed."""

    def __init__(self, store: "BlobStore", max_bytes: int | None):
        self._store = store
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        self.path = store.staging_dir / f"upload-{secrets.token_hex(12)}"
        self._file: BinaryIO | None = open(self.path, "xb")
        self.digest: str | None = None
        self.committed = False

    def write(self, chunk: bytes) -> None:
        if self._max_bytes is not None and self.size + len(chunk) > self._max_bytes:
            self.discard()
            raise PayloadTooLarge(
                f"upload exceeds the limit of {self._max_bytes} bytes", limit=self._max_bytes
            )
        self._hash.update(chunk)
        try:
            self._file.write(chunk)
        except OSError as exc:
            self.discard()
            if exc.errno in _DISK_FULL:
                raise StorageFull(
                    "artifact storage is full; nothing was stored", stored_bytes=self.size
                ) from exc
            raise
        self.size += len(chunk)

    def finish(self) -> str:
        """Flush and fsync the staged bytes; returns the SHA-256 hex digest."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            self.discard()
            if exc.errno in _DISK_FULL:
                raise StorageFull("artifact storage is full; nothing was stored") from exc
            raise
        self.digest = self._hash.hexdigest()
        return self.digest

    def commit(self) -> Path:
        """Move the finished blob to its content address (idempotent for duplicates)."""
        if self.digest is None:
            self.finish()
        target = self._store.path_for(self.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.unlink(self.path)
        else:
            os.replace(self.path, target)
            _fsync_dir(target.parent)
        self.committed = True
        return target

    def discard(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if not self.committed:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class BlobStore:
    """Blobs under `root/sha256/`, staging under `root/staging/`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.staging_dir = self.root / "staging"
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def stage(self, max_bytes: int | None = None) -> StagedBlob:
        return StagedBlob(self, max_bytes)

    def put_bytes(self, data: bytes) -> str:
        staged = self.stage()
        staged.write(data)
        staged.finish()
        staged.commit()
        return staged.digest

    def path_for(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise NotFound(f"{digest!r} is not a SHA-256 digest")
        return self.root / "sha256" / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path_for(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob sha256:{digest} is missing from storage") from None

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path_for(digest))
        except FileNotFoundError:
            pass

    def hash_stored(self, digest: str) -> str:
        hasher = hashlib.sha256()
        with self.open(digest) as fh:
            for chunk in iter(lambda: fh.read(CHUNK_SIZE), b""):
                hasher.update(chunk)
        return hasher.hexdigest()

    def read_verified(self, digest: str) -> bytes:
        """The whole blob in memory, after checking it still hashes to `digest`."""
        with self.open(digest) as fh:
            data = fh.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise IntegrityFailure(
                f"stored blob sha256:{digest} has been altered (it now hashes to sha256:{actual})",
                expected=digest,
                actual=actual,
            )
        return data

    def iter_verified(self, digest: str) -> Iterator[bytes]:
        """Stream the whole blob, hashing what it yields; raise IntegrityFailure instead of the last chunk.

        Holding the last chunk back until the hash is known means altered bytes
        never arrive complete: the client sees a failed, short transfer. The
        blob is opened now, so a missing one raises NotFound before any byte.
        """
        return _verified_chunks(self.open(digest), digest)

    def iter_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes [start, end] inclusive, one chunk at a time; a missing blob raises NotFound now."""
        return _range_chunks(self.open(digest), start, end)


def _verified_chunks(fh: BinaryIO, digest: str) -> Iterator[bytes]:
    hasher = hashlib.sha256()
    with fh:
        held = fh.read(CHUNK_SIZE)
        hasher.update(held)
        for chunk in iter(lambda: fh.read(CHUNK_SIZE), b""):
            hasher.update(chunk)
            yield held
            held = chunk
    actual = hasher.hexdigest()
    if actual != digest:
        raise IntegrityFailure(
            f"stored blob sha256:{digest} has been altered (it now hashes to sha256:{actual})",
            expected=digest,
            actual=actual,
        )
    if held:
        yield held


def _range_chunks(fh: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
    with fh:
        fh.seek(start)
        remaining = None if end is None else end - start + 1
        while remaining is None or remaining > 0:
            chunk = fh.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def default_store() -> BlobStore:
    from django.conf import settings

    return BlobStore(settings.MLCP_ARTIFACT_DIR)
