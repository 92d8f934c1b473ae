"""Content-addressed blob storage: one interface, a filesystem store and an S3 store behind it.

Every store keeps a blob at `sha256/<ab>/<digest>`, hashes bytes while they
are staged, makes them visible only when committed, keeps the same bytes once
(replacing other bytes found at the address), and streams them back verified. `default_store()` picks the store that
MLCP_ARTIFACT_STORE names; the S3 store lives in `registry.storage_s3`.
"""

import errno
import hashlib
import os
import secrets
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from controlplane.errors import IntegrityFailure, InvalidInput, NotFound, PayloadTooLarge, StorageFull

CHUNK_SIZE = 1024 * 1024
# `StagedBlob.receive`: blocks read at once, and how many may be read ahead of the hasher or the store.
# Memory held is at most RECEIVE_BLOCK * (RECEIVE_AHEAD + 1) plus what the store buffers (an S3 part).
# Large blocks: each one costs two thread hand-offs, and on a busy machine every hand-off waits for a time slice.
RECEIVE_BLOCK = 4 * 1024 * 1024
RECEIVE_AHEAD = 4
# The filesystem store flushes a received blob this often and drops the flushed pages from the page cache: the
# fsync before commit finds little left to write, and a gigabyte upload cycles through SYNC_EVERY of page cache
# instead of claiming a gigabyte of it (evicting what other requests read; on a VM, touching fresh memory).
SYNC_EVERY = 64 * 1024 * 1024
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def blob_key(digest: str) -> str:
    """Where a blob lives in every store, relative to its root: `sha256/<ab>/<digest>`."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise NotFound(f"{digest!r} is not a SHA-256 digest")
    return f"sha256/{digest[:2]}/{digest}"


class StagedBlob:
    """A blob being written: hashed as it arrives, invisible until committed.

    Subclasses keep the bytes (`_keep`), make them readable (`finish`, `open`),
    visible at their content address (`commit`) or gone (`discard`).
    """

    def __init__(self, max_bytes: int | None):
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
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
            self._keep(chunk)
        except BaseException:
            self.discard()
            raise
        self.size += len(chunk)

    def receive(self, read: Callable[[int], bytes], length: int) -> None:
        """Stage exactly `length` bytes taken from `read(n)` (a request body), then `finish()`.

        Each block is hashed on one thread and kept (written, or sent as part of
        an S3 part) on another while this one reads the next: hashlib and file
        and socket I/O release the GIL on large buffers, so receiving, hashing
        and storing overlap instead of taking turns. At most RECEIVE_AHEAD blocks
        wait for either. A body that ends before `length` bytes raises
        InvalidInput (`upload_interrupted`); whatever is raised, nothing stays staged.
        """
        if self._max_bytes is not None and length > self._max_bytes:
            self.discard()
            raise PayloadTooLarge(f"the upload is {length} bytes; uploads are limited to {self._max_bytes} bytes",
                                  limit=self._max_bytes)
        hashing = ThreadPoolExecutor(1, thread_name_prefix="mlcp-hash")
        keeping = ThreadPoolExecutor(1, thread_name_prefix="mlcp-keep")
        in_flight: deque = deque()
        try:
            while self.size < length:
                block = _read_block(read, min(RECEIVE_BLOCK, length - self.size), length - self.size)
                # One worker each runs its blocks in the order given, so the digest is of the bytes in order.
                in_flight.append((hashing.submit(self._hash.update, block),
                                  keeping.submit(self._keep_received, block)))
                self.size += len(block)
                # Blocks done are let go (and a store's error seen) at once; past RECEIVE_AHEAD, reading waits.
                while in_flight and (len(in_flight) > RECEIVE_AHEAD or all(f.done() for f in in_flight[0])):
                    _wait_for(in_flight.popleft())
            while in_flight:
                _wait_for(in_flight.popleft())
        except BaseException:
            # The store's worker must be idle before its staging is removed under it.
            hashing.shutdown(wait=True, cancel_futures=True)
            keeping.shutdown(wait=True, cancel_futures=True)
            self.discard()
            raise
        hashing.shutdown()
        keeping.shutdown()
        self.finish()

    def _keep_received(self, block: bytes) -> None:
        """`_keep` for `receive`, on its store thread; a store may also flush there as it goes."""
        self._keep(block)

    def _keep(self, chunk: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> str:
        """Make the staged bytes durable and readable; returns the SHA-256 hex digest."""
        raise NotImplementedError

    def open(self) -> BinaryIO:
        """The finished staged bytes, seekable (to inspect an artifact before it is committed)."""
        raise NotImplementedError

    def commit(self) -> None:
        """Make the finished blob visible at its content address (idempotent for duplicates)."""
        raise NotImplementedError

    def discard(self) -> None:
        """Remove whatever was staged; a no-op once committed."""
        raise NotImplementedError


class BlobStore:
    """What every artifact store offers; streaming, hashing and verification are shared.

    A store provides `stage`, `exists`, `delete`, `open` (bytes from `start` on,
    up to `end` inclusive where it can stop early) and `check_writable`.
    """

    def stage(self, max_bytes: int | None = None) -> StagedBlob:
        raise NotImplementedError

    def exists(self, digest: str) -> bool:
        raise NotImplementedError

    def delete(self, digest: str) -> None:
        raise NotImplementedError

    def open(self, digest: str, start: int = 0, end: int | None = None) -> BinaryIO:
        """A stream of the blob's bytes from `start`; a missing blob raises NotFound now, and a `start` at or
        past the stored end IntegrityFailure (`shorter_than_recorded`)."""
        raise NotImplementedError

    def check_writable(self) -> None:
        """Raise unless an upload could start now (the readiness probe)."""
        raise NotImplementedError

    def put_bytes(self, data: bytes) -> str:
        staged = self.stage()
        staged.write(data)
        staged.finish()
        staged.commit()
        return staged.digest

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
            raise _altered(digest, actual)
        return data

    def iter_verified(self, digest: str) -> Iterator[bytes]:
        """Stream the whole blob, hashing what it yields; raise IntegrityFailure instead of the last chunk.

        Holding the last chunk back until the hash is known means altered bytes
        never arrive complete: the client sees a failed, short transfer. The
        blob is opened now, so a missing one raises NotFound before any byte.
        """
        return _verified_chunks(self.open(digest), digest)

    def iter_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes [start, end] inclusive, one chunk at a time; a missing blob raises NotFound now.

        Bytes that end before `end` raise IntegrityFailure instead of ending the stream short.
        """
        return _range_chunks(self.open(digest, start, end), digest, start, end)


# ------------------------------------------------------------- filesystem

class FilesystemStagedBlob(StagedBlob):
    """Staged in a temporary file under `root/staging/`, fsynced, then renamed into place."""

    def __init__(self, store: "FilesystemStore", max_bytes: int | None):
        super().__init__(max_bytes)
        self._store = store
        self.path = store.staging_dir / f"upload-{secrets.token_hex(12)}"
        self._file: BinaryIO | None = open(self.path, "xb")
        self._written = 0
        self._synced = 0

    def _keep_received(self, block: bytes) -> None:
        self._keep(block)
        self._written += len(block)
        if self._written - self._synced >= SYNC_EVERY:
            # On this thread, while the next blocks arrive: written back, then let go of (clean pages only).
            self._file.flush()
            fd = self._file.fileno()
            _sync_data(fd, self._written)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, self._written, os.POSIX_FADV_DONTNEED)
            self._synced = self._written

    def _keep(self, chunk: bytes) -> None:
        try:
            self._file.write(chunk)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise StorageFull(
                    "artifact storage is full; nothing was stored", stored_bytes=self.size
                ) from exc
            raise

    def finish(self) -> str:
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

    def open(self) -> BinaryIO:
        return open(self.path, "rb")

    def commit(self) -> None:
        if self.digest is None:
            self.finish()
        target = self._store.path_for(self.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if _size_of(target) == self.size:
            # Taken for the same bytes: re-hashing a large blob on every duplicate upload would cost a
            # full read. Other bytes of the same size are caught by verified reads and `verifyblobs`.
            os.unlink(self.path)
        else:
            # Absent, or other bytes at the content address (truncated, planted): the upload's bytes
            # replace them atomically; a reader holding the old file keeps reading that.
            os.replace(self.path, target)
            _fsync_dir(target.parent)
        self.committed = True

    def discard(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if not self.committed:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class FilesystemStore(BlobStore):
    """Blobs under `root/sha256/`, staging under `root/staging/`; memory use is one chunk per blob."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.staging_dir = self.root / "staging"
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def stage(self, max_bytes: int | None = None) -> FilesystemStagedBlob:
        return FilesystemStagedBlob(self, max_bytes)

    def path_for(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    def open(self, digest: str, start: int = 0, end: int | None = None) -> BinaryIO:
        try:
            fh = open(self.path_for(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob sha256:{digest} is missing from storage") from None
        if start:
            if start >= os.fstat(fh.fileno()).st_size:
                fh.close()
                raise shorter_than_recorded(digest, start)
            fh.seek(start)
        return fh

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path_for(digest))
        except FileNotFoundError:
            pass

    def check_writable(self) -> None:
        # The store's own staging path: what an upload does first, then undone.
        self.stage().discard()


def _read_block(read: Callable[[int], bytes], wanted: int, remaining: int) -> bytes:
    try:
        block = read(wanted)
    except OSError as exc:  # the client reset the connection
        raise _interrupted(remaining) from exc
    if not block:
        raise _interrupted(remaining)
    return block


def _interrupted(remaining: int) -> InvalidInput:
    return InvalidInput(f"the upload ended {remaining} bytes early; nothing was stored", code="upload_interrupted")


def _wait_for(block_futures) -> None:
    hashed, kept = block_futures
    hashed.result()
    kept.result()


def _sync_data(fd: int, size: int) -> None:
    try:
        os.fdatasync(fd)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise StorageFull("artifact storage is full; nothing was stored", stored_bytes=size) from exc
        raise


def _altered(digest: str, actual: str) -> IntegrityFailure:
    return IntegrityFailure(
        f"stored blob sha256:{digest} has been altered (it now hashes to sha256:{actual})",
        expected=digest,
        actual=actual,
    )


def shorter_than_recorded(digest: str | None, position: int) -> IntegrityFailure:
    """A read the recorded size allows found no byte at `position`: the stored blob was cut short.

    Callers only ask for ranges within the size recorded at upload (the API answers 416 to others).
    """
    what = f"stored blob sha256:{digest}" if digest else "a staged upload"
    return IntegrityFailure(f"{what} ends before byte {position}: it is shorter than was stored",
                            code="artifact_tampered", digest=digest, position=position)


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
        raise _altered(digest, actual)
    if held:
        yield held


def _range_chunks(fh: BinaryIO, digest: str, start: int, end: int | None) -> Iterator[bytes]:
    # `fh` is positioned at `start` already; a file would read past `end`, so count.
    with fh:
        remaining = None if end is None else end - start + 1
        while remaining is None or remaining > 0:
            chunk = fh.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
            if not chunk:
                if remaining:
                    # Ending early would send fewer bytes than the response promised, and say nothing why.
                    raise shorter_than_recorded(digest, end - remaining + 1)
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def default_store() -> BlobStore:
    """The store MLCP_ARTIFACT_STORE names: an S3 bucket (`s3://bucket/prefix`), else MLCP_ARTIFACT_DIR."""
    from django.conf import settings

    if settings.MLCP_ARTIFACT_STORE:
        from registry.storage_s3 import S3Store

        return S3Store.from_url(settings.MLCP_ARTIFACT_STORE)
    return FilesystemStore(settings.MLCP_ARTIFACT_DIR)
