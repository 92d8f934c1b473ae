"""Fixtures shared by the whole suite: isolated storage, role clients, real servers."""

import pytest

from controlplane.roles import Role
from registry.models import RegisteredModel
from tests import factories
from tests.support.artifacts import (AWS_VARIABLES_TO_DROP, FilesystemArea, S3Bucket, aws_environment,
                                     moto_s3_server)
from tests.support.servers import redis_server


@pytest.fixture
def artifact_store_kind(request):
    """The store a test's blobs go to: the filesystem, unless `both_stores` parametrizes it
    (tests/registry/conftest.py lets a run choose S3 for the registry suite)."""
    return getattr(request, "param", "filesystem")


@pytest.fixture(autouse=True)
def isolated_artifacts(request, settings, tmp_path, artifact_store_kind):
    """Each test stores blobs in its own folder or S3 prefix, so leftovers can be counted exactly.

    Yields the `ArtifactArea` (tests/support/artifacts.py) that lists, reads and alters them.
    """
    settings.MLCP_ARTIFACT_DIR = tmp_path / "artifacts"
    if artifact_store_kind == "s3":
        area = request.getfixturevalue("s3_artifact_bucket").area()
        settings.MLCP_ARTIFACT_STORE = area.url
        yield area
        area.clear()  # moto keeps everything in memory for the session
    else:
        settings.MLCP_ARTIFACT_STORE = ""
        yield FilesystemArea(settings.MLCP_ARTIFACT_DIR)


@pytest.fixture
def stored_files(isolated_artifacts):
    """Lists everything in the artifact store (blobs, staging, S3 uploads in progress)."""
    return isolated_artifacts.files


@pytest.fixture(scope="session")
def s3_artifact_bucket():
    """A bucket on moto's S3 server for the session, with the AWS variables pointing at it."""
    import boto3

    with moto_s3_server() as endpoint, pytest.MonkeyPatch.context() as patch:
        for name, value in aws_environment(endpoint).items():
            patch.setenv(name, value)
        for name in AWS_VARIABLES_TO_DROP:
            patch.delenv(name, raising=False)
        client = boto3.session.Session().client("s3")
        client.create_bucket(Bucket="mlcp-test-artifacts")
        yield S3Bucket(client, "mlcp-test-artifacts")


@pytest.fixture
def ci(db):
    return factories.client_for(Role.CI)


@pytest.fixture
def viewer(db):
    return factories.client_for(Role.VIEWER)


@pytest.fixture
def approver(db):
    return factories.client_for(Role.APPROVER)


@pytest.fixture
def admin_client(db):
    return factories.client_for(Role.ADMIN)


@pytest.fixture
def resnet(db):
    return RegisteredModel.objects.create(name="resnet", class_labels=["0", "1", "2"])


@pytest.fixture(scope="session")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def kube_emulator():
    """A Kubernetes API emulator on loopback for the session (tests/k8s has its own)."""
    from devtools.embedded.kube import start_kube_emulator

    emulator = start_kube_emulator()
    yield emulator
    emulator.stop()


@pytest.fixture
def oncall(db):
    return factories.client_for(Role.ONCALL)


_STATUS_PATHS = {
    "registered": [],
    "awaiting_approval": ["gating", "awaiting_approval"],
    "approved": ["gating", "approved"],
    "rejected": ["gating", "rejected"],
    "deployed": ["gating", "approved", "canary", "deployed"],
}


@pytest.fixture
def make_version(db):
    """Builds signed versions of a model in a chosen status, through the registry's own services.

    `make_version(model, "deployed", production=True)` also points `production` at it.
    """
    from registry import services
    from registry.services import VersionMetadata

    seeds = iter(range(1000, 2000))

    def make(model, status="approved", *, production=False):
        version = services.ingest_bytes(model, factories.tiny_onnx(seed=next(seeds)), "model.onnx",
                                        VersionMetadata(), actor="test")
        for step in _STATUS_PATHS[status]:
            services.transition_version(version, step, actor="test", reason="test setup")
        if production:
            services.move_alias(model, "production", version, actor="test", reason="test setup")
        return version

    return make
