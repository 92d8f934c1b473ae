"""The artifact store a test writes to, on the filesystem or in S3 (moto's server on loopback), seen one way.

Tests list, read, alter and remove stored blobs through an `ArtifactArea`, so
the same test runs on both stores; `both_stores` runs a test on each.
"""

import os
import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from registry.storage import blob_key
from tests.support.servers import free_port, wait_for_port

STORES = ("filesystem", "s3")
both_stores = pytest.mark.parametrize("artifact_store_kind", STORES, indirect=True)
# For what only a filesystem can show (a kernel write failure standing in for a full disk).
filesystem_only = pytest.mark.parametrize("artifact_store_kind", ["filesystem"], indirect=True)
s3_only = pytest.mark.parametrize("artifact_store_kind", ["s3"], indirect=True)


class FilesystemArea:
    kind = "filesystem"

    def __init__(self, root: Path):
        self.root = Path(root)

    def files(self) -> list[str]:
        """Every stored file, blobs and staging, relative to the store's root."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    def staging(self) -> list[str]:
        return sorted(p.name for p in (self.root / "staging").glob("*"))

    def blobs(self) -> list[str]:
        return sorted(p.name for p in (self.root / "sha256").rglob("*") if p.is_file())

    def read(self, digest: str) -> bytes:
        return (self.root / blob_key(digest)).read_bytes()

    def overwrite(self, digest: str, data: bytes) -> None:
        path = self.root / blob_key(digest)
        path.chmod(0o644)
        path.write_bytes(data)

    def clear(self) -> None:
        pass  # under the test's tmp_path


class S3Area:
    """One test's prefix in the session's bucket; in-progress multipart uploads count as staging."""

    kind = "s3"

    def __init__(self, client, bucket: str, prefix: str):
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.url = f"s3://{bucket}/{prefix}"

    def files(self) -> list[str]:
        return sorted(self._objects() + self._uploads())

    def staging(self) -> list[str]:
        return sorted(key.removeprefix("staging/") for key in self.files() if key.startswith("staging/"))

    def blobs(self) -> list[str]:
        return sorted(key.rpartition("/")[2] for key in self._objects() if key.startswith("sha256/"))

    def read(self, digest: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(digest))["Body"].read()

    def overwrite(self, digest: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(digest), Body=data)

    def clear(self) -> None:
        for key in self._objects():
            self.client.delete_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")
        for upload in self._list_uploads():
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    def _key(self, digest: str) -> str:
        return f"{self.prefix}/{blob_key(digest)}"

    def _objects(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/")
        return [item["Key"].removeprefix(f"{self.prefix}/") for page in pages for item in page.get("Contents", [])]

    def _list_uploads(self) -> list[dict]:
        return self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=f"{self.prefix}/").get("Uploads", [])

    def _uploads(self) -> list[str]:
        return [upload["Key"].removeprefix(f"{self.prefix}/") for upload in self._list_uploads()]


class S3Bucket:
    """The session's bucket on moto's server; each test gets a prefix of its own."""

    def __init__(self, client, name: str):
        self.client, self.name = client, name

    def area(self) -> S3Area:
        return S3Area(self.client, self.name, f"test-{uuid.uuid4().hex[:12]}")


def moto_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "moto_server"
    found = str(beside_python) if beside_python.exists() else shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server not found: install the dev extra (moto[server])")
    return found


@contextmanager
def moto_s3_server():
    """moto's standalone server on loopback, in memory; yields its endpoint URL."""
    port = free_port()
    process = subprocess.Popen([moto_server_binary(), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=60, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


# What points boto3, here and in servers the tests start, at moto: the usual AWS variables.
def aws_environment(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


AWS_VARIABLES_TO_DROP = ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION")
