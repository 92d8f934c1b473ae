"""The controller's loop: one lease holder at a time, and a slow rollout that does not block the others."""

import threading
import uuid
from concurrent import futures
from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import call_command

from k8s import Cluster, RetryPolicy
from registry.models import RegisteredModel
from rollouts import services
from rollouts.choices import Phase
from rollouts.controller import Controller, acquire_lease, release_lease
from rollouts.models import ControllerLease
from tests.factories import set_target

T = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.django_db
def test_only_one_controller_holds_the_lease_until_it_expires():
    assert acquire_lease("a", ttl_s=30, now=T)
    assert not acquire_lease("b", ttl_s=30, now=T + timedelta(seconds=10))
    assert acquire_lease("a", ttl_s=30, now=T + timedelta(seconds=20))  # renewal
    assert not acquire_lease("b", ttl_s=30, now=T + timedelta(seconds=49))
    assert acquire_lease("b", ttl_s=30, now=T + timedelta(seconds=50))
    assert ControllerLease.objects.get().holder == "b"


@pytest.mark.django_db
def test_released_lease_is_free_at_once():
    assert acquire_lease("a", ttl_s=300)
    release_lease("a")
    assert acquire_lease("b", ttl_s=300)


class BlockingProvider:
    """Stands in for a Prometheus that hangs for one model until released."""

    def __init__(self, stuck_model):
        self.stuck_model, self.release = stuck_model, threading.Event()

    def observe(self, model, *args, **kwargs):
        if model == self.stuck_model:
            self.release.wait()
        raise AssertionError("not reached in this test")


def all_finished_but(stuck_pk):
    """A tick's wait that returns once every rollout but `stuck_pk` has finished.

    It stands in for the controller's wall-clock budget, so the test does not
    depend on how fast this machine, or the emulator after earlier tests, is.
    """
    def wait(pending):
        others = [future for future, pk in pending.items() if pk != stuck_pk]
        futures.wait(others)
        return futures.wait(pending, timeout=0)
    return wait


@pytest.mark.django_db(transaction=True)
def test_a_hung_rollout_does_not_block_the_others(make_version, kube_emulator):
    cluster = Cluster(kube_emulator.api_client(), retry=RetryPolicy(attempts=2, base_delay_s=0.01))
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    rollouts = {}
    for name in ("stuck", "fine"):
        model = RegisteredModel.objects.create(name=name)
        make_version(model, "deployed", production=True)
        labels = {"app": name}
        cluster.apps.create_namespaced_deployment(namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 4, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "s", "image": "x"}]}}}})
        set_target(model, {"namespace": namespace, "deployment": name, "replicas": 4})
        rollout = services.start_rollout(model, make_version(model), actor="ci")
        services.transition_rollout(rollout, Phase.PROGRESSING, actor="test", **services.step_start_fields(rollout, 0, T))
        rollouts[name] = rollout
    # Canaries exist and are ready, so the next tick asks the provider.
    provider = BlockingProvider("stuck")
    controller = Controller(cluster, provider, max_workers=2, wait_for_rollouts=all_finished_but(rollouts["stuck"].pk))
    services.pause(rollouts["fine"], actor="test")
    controller._ensure_step(rollouts["stuck"])
    kube_emulator.settle_deployments(namespace, "stuck", "stuck-canary")
    services.resume(rollouts["fine"], actor="test")
    try:
        first = controller.tick(T + timedelta(seconds=60))
        assert first[rollouts["stuck"].pk].startswith("timed out")
        assert first[rollouts["fine"].pk] == "ensured step"
        second = controller.tick(T + timedelta(seconds=120))
        assert second[rollouts["stuck"].pk] == "still running from an earlier tick"
        assert rollouts["fine"].pk in second
    finally:
        provider.release.set()
        cluster.close()


@pytest.mark.django_db
def test_runcontroller_once_without_the_lease_does_nothing(settings, kube_emulator):
    settings.MLCP_K8S_HOST = kube_emulator.url
    acquire_lease("someone-else", ttl_s=300)
    from io import StringIO
    err = StringIO()
    call_command("runcontroller", "--once", stderr=err)
    assert "another controller holds the lease" in err.getvalue()
    assert ControllerLease.objects.get().holder == "someone-else"
