"""The registry suite runs on the artifact store MLCP_TEST_ARTIFACT_STORE names (`filesystem` or `s3`).

`python -m tests.harness` runs it on the filesystem with SQLite and on S3
(moto's server) with PostgreSQL; tests marked `both_stores` run on each in every pass.
"""

import os

import pytest

from tests.support.artifacts import STORES


@pytest.fixture
def artifact_store_kind(request):
    kind = getattr(request, "param", None) or os.environ.get("MLCP_TEST_ARTIFACT_STORE") or "filesystem"
    if kind not in STORES:
        pytest.fail(f"MLCP_TEST_ARTIFACT_STORE must be one of {', '.join(STORES)}, got {kind!r}")
    return kind
