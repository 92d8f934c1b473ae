"""Fixtures shared by the whole suite: isolated storage, role clients, real servers."""

import pytest

from controlplane.roles import Role
from registry.models import RegisteredModel
from tests import factories
from tests.support.servers import redis_server


@pytest.fixture(autouse=True)
def isolated_artifacts(settings, tmp_path):
    """Each test stores blobs in its own folder, so leftovers can be counted exactly."""
    settings.MLCP_ARTIFACT_DIR = tmp_path / "artifacts"
    return settings.MLCP_ARTIFACT_DIR


@pytest.fixture
def stored_files(isolated_artifacts):
    """Lists every file under the artifact store (blobs and staging)."""
    def _list():
        return sorted(str(p.relative_to(isolated_artifacts)) for p in isolated_artifacts.rglob("*") if p.is_file())
    return _list


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
    "deployed": ["gating", "approved", "deployed"],
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
