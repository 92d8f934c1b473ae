"""Content-addressed blobs in an S3 bucket or any S3-compatible store: the only module that imports boto3.

The layout under `s3://bucket/prefix/` is the filesystem store's
(`sha256/<ab>/<digest>`, `staging/`), so a filesystem store moves to a bucket
with `aws s3 sync`. Endpoint, region and credentials come from boto3's usual
sources (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, a profile, a pod's web identity).

Staging holds at most one part (PART_SIZE) in memory. A blob that fits in
one part is written once, straight to its content address, with its SHA-256
as the object's checksum, which S3 verifies. A larger one is a multipart
upload to `staging/` with each part's SHA-256 checked by S3; committing copies
it server-side to its content address, asking S3 for the copy's full-object
SHA-256 (or re-hashing the copy, from a store that answers without one) and
comparing it with the digest hashed on the way in, then deletes the staging
object. An object already at the content address is kept only when S3's own
SHA-256 of it is the digest; otherwise the upload replaces it. A failed upload
is aborted, so no part of it is visible; a crash between finish and commit, or
a staging object that could not be deleted after its copy, leaves a `staging/`
object behind, which a bucket lifecycle rule on that prefix expires.

No botocore exception leaves this module: a missing object is NotFound, a
full store StorageFull, a range past an object's end IntegrityFailure
(`artifact_tampered`: it is shorter than was stored), anything else
UpstreamUnavailable (`artifact_store_unavailable`), with the details in the
log only.
"""

import base64
import functools
import hashlib
import io
import logging
import os
import secrets
from contextlib import contextmanager
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import ImproperlyConfigured

from controlplane.errors import IntegrityFailure, MlcpError, NotFound, StorageFull, UpstreamUnavailable
from registry.storage import CHUNK_SIZE, BlobStore, StagedBlob, blob_key, shorter_than_recorded

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# S3's rules: parts of 5 MiB or more (the last may be smaller), at most 10,000 of them;
# 8 MiB parts carry blobs up to 78 GiB, well past MLCP_MAX_UPLOAD_BYTES.
PART_SIZE = 8 * MIB
# CopyObject copies at most 5 GiB; a larger blob is copied part by part (UploadPartCopy).
COPY_LIMIT = 5 * 1024 * MIB
COPY_PART_SIZE = 512 * MIB
# Error codes S3-compatible stores use when they are out of space (Ceph, MinIO).
_FULL = {"QuotaExceeded", "XMinioStorageFull", "XMinioAdminBucketQuotaExceeded"}
_MISSING = {"NoSuchKey", "404", "NotFound"}
# AWS variables that decide which client to build; the cache is keyed by their values.
_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE",
               "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@contextmanager
def _s3_errors(action: str, digest: str | None = None, position: int = 0):
    """Turn what boto3 raises into mlcp's domain errors; `position` is where a ranged read starts."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING and digest is not None:
            raise NotFound(f"blob sha256:{digest} is missing from storage") from None
        if code == "InvalidRange":
            # 416: the range starts past the object's end, yet lies within the size recorded at upload.
            raise shorter_than_recorded(digest, position) from None
        if code in _FULL:
            raise StorageFull("artifact storage is full; nothing was stored") from None
        log.error("artifact store: %s failed: %s", action, exc)
        raise _unavailable() from None
    except BotoCoreError as exc:
        log.error("artifact store: %s failed: %s", action, exc)
        raise _unavailable() from None


def _unavailable() -> UpstreamUnavailable:
    return UpstreamUnavailable("the artifact store did not answer or refused the request; try again later",
                               code="artifact_store_unavailable")


class S3StagedBlob(StagedBlob):
    """Hashed and sent one part at a time; only committed bytes appear under `sha256/`."""

    def __init__(self, store: "S3Store", max_bytes: int | None):
        super().__init__(max_bytes)
        self._store = store
        self.key = store.key(f"staging/upload-{secrets.token_hex(12)}")
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        self._uploaded = False  # the multipart upload is complete: the staging object exists

    def _keep(self, chunk: bytes) -> None:
        rest = memoryview(chunk)
        while rest:
            room = PART_SIZE - len(self._buffer)
            self._buffer += rest[:room]
            rest = rest[room:]
            if len(self._buffer) == PART_SIZE:
                # The buffer itself is sent, not a copy: one part in memory, whatever the chunk size.
                part, self._buffer = self._buffer, bytearray()
                self._send_part(part)

    def _send_part(self, data: bytearray) -> None:
        client, bucket = self._store.client, self._store.bucket
        if self._upload_id is None:
            with _s3_errors("starting a multipart upload"):
                self._upload_id = client.create_multipart_upload(
                    Bucket=bucket, Key=self.key, ChecksumAlgorithm="SHA256")["UploadId"]
        number = len(self._parts) + 1
        checksum = _b64(hashlib.sha256(data).digest())
        with _s3_errors("uploading a part"):
            sent = client.upload_part(Bucket=bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number,
                                      Body=data, ChecksumSHA256=checksum)
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"], "ChecksumSHA256": checksum})

    def finish(self) -> str:
        if self.digest is not None:
            return self.digest
        try:
            if self._upload_id is not None:
                if self._buffer:
                    part, self._buffer = self._buffer, bytearray()
                    self._send_part(part)
                with _s3_errors("completing a multipart upload"):
                    self._store.client.complete_multipart_upload(
                        Bucket=self._store.bucket, Key=self.key, UploadId=self._upload_id,
                        MultipartUpload={"Parts": self._parts})
                self._uploaded = True
        except BaseException:
            self.discard()
            raise
        self.digest = self._hash.hexdigest()
        return self.digest

    def open(self):
        if self._upload_id is None:
            return io.BytesIO(bytes(self._buffer))
        return self._store.open_object(self.key, self.size)

    def commit(self) -> None:
        if self.digest is None:
            self.finish()
        store, target = self._store, self._store.key(blob_key(self.digest))
        if not store.holds_intact(self.digest):
            # Absent, or an object S3 cannot vouch for (altered, planted, or copied in parts): replaced.
            if self._upload_id is None:
                with _s3_errors("storing a blob"):
                    # S3 refuses the bytes unless they hash to the checksum: the digest we computed. Naming
                    # the algorithm too has S3 keep the checksum with the object, for `holds_intact`.
                    store.client.put_object(Bucket=store.bucket, Key=target, Body=self._buffer,
                                            ChecksumAlgorithm="SHA256",
                                            ChecksumSHA256=_b64(bytes.fromhex(self.digest)))
            else:
                store.copy(self.key, target, self.size, self.digest)
        self._buffer = bytearray()
        self.committed = True
        try:
            self._drop_staging()
        except MlcpError:
            # The blob is in place, so the upload succeeded; failing it now would leave a version-less
            # blob behind and the client retrying for nothing. The lifecycle rule expires `staging/`.
            log.warning("artifact store: staging %s could not be removed after commit", self.key)

    def discard(self) -> None:
        if self.committed:
            return
        self._buffer = bytearray()
        try:
            self._drop_staging()
        except MlcpError:
            # Discarding runs while another error is on its way out; that one is the news. An
            # incomplete upload left here is invisible and the bucket's lifecycle rule aborts it.
            log.warning("artifact store: staging %s could not be removed", self.key)

    def _drop_staging(self) -> None:
        client, bucket = self._store.client, self._store.bucket
        if self._uploaded:
            with _s3_errors("removing a staging object"):
                client.delete_object(Bucket=bucket, Key=self.key)
        elif self._upload_id is not None:
            with _s3_errors("aborting a multipart upload"):
                client.abort_multipart_upload(Bucket=bucket, Key=self.key, UploadId=self._upload_id)
        self._upload_id, self._uploaded = None, False


class S3Store(BlobStore):
    """Blobs at `s3://bucket/prefix/sha256/<ab>/<digest>`, staging under `prefix/staging/`."""

    def __init__(self, client, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_url(cls, url: str) -> "S3Store":
        """`s3://bucket/prefix`, with a client built from the environment's AWS settings."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ImproperlyConfigured(f"MLCP_ARTIFACT_STORE must look like s3://bucket/prefix, got {url!r}")
        environment = tuple(os.environ.get(name) for name in _CLIENT_ENV)
        return cls(_client(environment), parsed.netloc, parsed.path)

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def stage(self, max_bytes: int | None = None) -> S3StagedBlob:
        return S3StagedBlob(self, max_bytes)

    def exists(self, digest: str) -> bool:
        try:
            with _s3_errors("looking up a blob", digest):
                self.client.head_object(Bucket=self.bucket, Key=self.key(blob_key(digest)))
        except NotFound:
            return False
        return True

    def holds_intact(self, digest: str) -> bool:
        """Whether the blob is stored with S3's own SHA-256 of it equal to the digest.

        S3 computed that checksum from the bytes it received (or refused them), so an object put there
        by other means, with other bytes, cannot carry it. Objects copied in parts (over COPY_LIMIT) have
        no whole-object SHA-256 and are stored again by every upload of the same bytes.
        """
        try:
            with _s3_errors("looking up a blob", digest):
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(blob_key(digest)),
                                               ChecksumMode="ENABLED")
        except NotFound:
            return False
        return head.get("ChecksumSHA256") == _b64(bytes.fromhex(digest))

    def delete(self, digest: str) -> None:
        with _s3_errors("deleting a blob"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(blob_key(digest)))

    def open(self, digest: str, start: int = 0, end: int | None = None):
        key = self.key(blob_key(digest))
        extra = {"Range": f"bytes={start}-{'' if end is None else end}"} if start or end is not None else {}
        with _s3_errors("reading a blob", digest, start):
            body = self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        return _TranslatedBody(body, digest)

    def open_object(self, key: str, size: int):
        """Any object as a seekable file, read by ranges of at least one chunk."""
        return io.BufferedReader(_RangedObject(self, key, size), buffer_size=CHUNK_SIZE)

    def check_writable(self) -> None:
        # What an upload does first, then undone: it needs write access and leaves no object version behind.
        key = self.key(f"staging/readyz-{secrets.token_hex(8)}")
        with _s3_errors("checking write access"):
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])

    def copy(self, source: str, target: str, size: int, digest: str) -> None:
        """Server-side copy of a staged object to its content address; S3's SHA-256 of it must be the digest."""
        if size > COPY_LIMIT:
            # A multipart copy's checksum is one of part checksums, not of the object; every part
            # was checked by S3 on the way in, and readers verify the whole stream.
            self._copy_in_parts(source, target, size)
            return
        with _s3_errors("copying a staged blob"):
            copied = self.client.copy_object(Bucket=self.bucket, Key=target, ChecksumAlgorithm="SHA256",
                                             CopySource={"Bucket": self.bucket, "Key": source})
        checksum = copied.get("CopyObjectResult", {}).get("ChecksumSHA256")
        if checksum and "-" not in checksum:
            actual = base64.b64decode(checksum).hex()
        else:
            # A store that answers without a whole-object checksum vouches for nothing: read the copy back.
            actual = self._sha256_of(target, digest)
        if actual != digest:
            with _s3_errors("removing a bad copy"):
                self.client.delete_object(Bucket=self.bucket, Key=target)
            raise IntegrityFailure(f"the artifact store holds other bytes than were uploaded (sha256:{actual}, "
                                   f"not sha256:{digest}); nothing was stored", expected=digest, actual=actual)

    def _sha256_of(self, key: str, digest: str) -> str:
        with _s3_errors("reading back a copy", digest):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        hasher = hashlib.sha256()
        with _TranslatedBody(body, digest) as fh:
            for chunk in iter(lambda: fh.read(CHUNK_SIZE), b""):
                hasher.update(chunk)
        return hasher.hexdigest()

    def _copy_in_parts(self, source: str, target: str, size: int) -> None:
        with _s3_errors("copying a staged blob in parts"):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=target)["UploadId"]
        try:
            parts = []
            for number, first in enumerate(range(0, size, COPY_PART_SIZE), start=1):
                last = min(first + COPY_PART_SIZE, size) - 1
                with _s3_errors("copying a part"):
                    copied = self.client.upload_part_copy(
                        Bucket=self.bucket, Key=target, UploadId=upload_id, PartNumber=number,
                        CopySource={"Bucket": self.bucket, "Key": source}, CopySourceRange=f"bytes={first}-{last}")
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            with _s3_errors("completing a copy"):
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload_id,
                                                      MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                with _s3_errors("aborting a copy"):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload_id)
            except MlcpError:
                log.warning("artifact store: the copy to %s could not be aborted", target)
            raise


class _TranslatedBody:
    """A GetObject body whose read errors (a connection dropped mid-stream) are domain errors."""

    def __init__(self, body, digest: str):
        self._body, self._digest = body, digest

    def read(self, size: int = -1) -> bytes:
        with _s3_errors("reading a blob", self._digest):
            return self._body.read(None if size is None or size < 0 else size)

    def close(self) -> None:
        self._body.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _RangedObject(io.RawIOBase):
    """A read-only, seekable view of an object: each read is one ranged GET."""

    def __init__(self, store: S3Store, key: str, size: int):
        self._store, self._key, self._size, self._position = store, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        last = self._position + wanted - 1
        with _s3_errors("reading a staged blob", position=self._position):
            data = self._store.client.get_object(Bucket=self._store.bucket, Key=self._key,
                                                 Range=f"bytes={self._position}-{last}")["Body"].read()
        buffer[:len(data)] = data
        self._position += len(data)
        return len(data)


@functools.lru_cache(maxsize=4)
def _client(environment: tuple):
    # One client per set of AWS variables: clients are thread-safe and costly to build, and a
    # changed variable (a test's fake server, rotated keys) gets a new one.
    del environment  # the cache key; boto3 reads the variables itself
    config = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 3},
                    max_pool_connections=32)
    return boto3.session.Session().client("s3", config=config)
