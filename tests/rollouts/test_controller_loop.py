"""The controller's loop: one lease holder at a time, fenced writes, and slow work that blocks nothing else."""

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
from rollouts.lease import Grant, LeaseKeeper, LeaseLost, acting_under
from rollouts.models import ControllerLease, Rollout
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
        self.stuck_model, self.entered, self.release = stuck_model, threading.Event(), threading.Event()

    def observe(self, model, *args, **kwargs):
        if model == self.stuck_model:
            self.entered.set()
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


def _progressing(make_version, cluster, names, now=T):
    """A progressing rollout per name, each at its first step on a Deployment of its own in one namespace."""
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    rollouts = {}
    for name in names:
        model = RegisteredModel.objects.create(name=name)
        make_version(model, "deployed", production=True)
        labels = {"app": name}
        cluster.apps.create_namespaced_deployment(namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 4, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "s", "image": "x"}]}}}})
        set_target(model, {"namespace": namespace, "deployment": name, "replicas": 4})
        rollout = services.start_rollout(model, make_version(model), actor="ci")
        services.transition_rollout(rollout, Phase.PROGRESSING, actor="test", **services.step_start_fields(rollout, 0, now))
        rollouts[name] = rollout
    return namespace, rollouts


@pytest.mark.django_db(transaction=True)
def test_a_hung_rollout_does_not_block_the_others(make_version, kube_emulator):
    cluster = Cluster(kube_emulator.api_client(), retry=RetryPolicy(attempts=2, base_delay_s=0.01))
    namespace, rollouts = _progressing(make_version, cluster, ("stuck", "fine"))
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


@pytest.mark.django_db(transaction=True)
def test_a_rollback_does_not_wait_for_its_own_analysis_stuck_on_prometheus(make_version, kube_emulator):
    """The rollout's analysis hangs in the analysis lane; on-call rolls it back, and the next tick retreats it in
    the lane of work that needs no metrics while that analysis still hangs. When it returns, it is superseded."""
    cluster = Cluster(kube_emulator.api_client(), retry=RetryPolicy(attempts=2, base_delay_s=0.01))
    namespace, rollouts = _progressing(make_version, cluster, ("stuck",))
    stuck = rollouts["stuck"]
    provider = BlockingProvider("stuck")

    def until_its_analysis_hangs(pending):
        assert provider.entered.wait(timeout=120), "the analysis never reached Prometheus"
        return futures.wait(pending, timeout=0)
    controller = Controller(cluster, provider, max_workers=1, wait_for_rollouts=until_its_analysis_hangs)
    controller._ensure_step(stuck)
    kube_emulator.settle_deployments(namespace, "stuck", "stuck-canary")
    try:
        assert controller.tick(T + timedelta(seconds=60))[stuck.pk].startswith("timed out")
        services.rollback(stuck.model, reason="pager", actor="oncall")
        controller.wait_for_rollouts = lambda pending: futures.wait(pending)
        assert controller.tick(T + timedelta(seconds=61)) == {stuck.pk: "rolled_back"}
        assert not provider.release.is_set()  # the analysis still hangs
        assert kube_emulator.object("apps/v1/deployments", namespace, "stuck-canary")["spec"]["replicas"] == 0
    finally:
        provider.release.set()
        cluster.close()


@pytest.mark.django_db
def test_the_rollout_that_waited_longest_goes_first_not_the_lowest_id(resnet, make_version):
    from k8s import connect
    from tests.support.servers import free_port

    models = [resnet, *(RegisteredModel.objects.create(name=f"m{i}") for i in range(2))]
    for model in models:
        make_version(model, "deployed", production=True)
        set_target(model)
    rollouts = [services.start_rollout(m, make_version(m), actor="ci") for m in models]
    for rollout, minutes_ago in zip(rollouts, (1, 30, 10)):  # the lowest id changed last
        Rollout.objects.filter(pk=rollout.pk).update(updated_at=T - timedelta(minutes=minutes_ago))
    # No cluster answers: every rollout stays active, and the ticks show only their order.
    unreachable = connect(f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(attempts=1))
    assert list(Controller(unreachable, NoMetrics(), max_workers=0).tick(T)) == [
        rollouts[1].pk, rollouts[2].pk, rollouts[0].pk]
    # All changed at T now; a controller that gave one a turn already puts it after the others.
    controller = Controller(unreachable, NoMetrics(), max_workers=0)
    controller._last_turn[rollouts[0].pk] = 1.0
    assert list(controller.tick(T)) == [rollouts[1].pk, rollouts[2].pk, rollouts[0].pk]


class NoMetrics:
    def observe(self, *args, **kwargs):
        raise AssertionError("no analysis in this test")


# ------------------------------------------------------------------ fencing

@pytest.mark.django_db(transaction=True)
def test_once_told_to_stop_a_controller_begins_no_step_even_in_the_tick_under_way(make_version, kube_emulator):
    """What SIGTERM does first: the rollback asked for after it is left to the successor, untouched here."""
    cluster = Cluster(kube_emulator.api_client(), retry=RetryPolicy(attempts=2, base_delay_s=0.01))
    namespace, rollouts = _progressing(make_version, cluster, ("leaving",))
    leaving = rollouts["leaving"]
    controller = Controller(cluster, NoMetrics(), max_workers=1)
    controller._ensure_step(leaving)
    kube_emulator.settle_deployments(namespace, "leaving", "leaving-canary")
    services.rollback(leaving.model, reason="pager", actor="oncall")
    controller.refuse_new_steps()
    mark = kube_emulator.mark()
    try:
        assert controller.tick(T + timedelta(seconds=60)) == {leaving.pk: "stopped"}
        assert [w for w in kube_emulator.writes(since=mark)] == []
        assert Rollout.objects.get(pk=leaving.pk).phase == Phase.ROLLING_BACK
        assert controller.stop(timeout_s=0)
    finally:
        cluster.close()


@pytest.mark.django_db
def test_each_change_of_hands_is_a_new_generation_and_a_renewal_is_not():
    assert acquire_lease("a", ttl_s=30, now=T) == 1
    assert acquire_lease("a", ttl_s=30, now=T + timedelta(seconds=20)) == 1
    assert acquire_lease("b", ttl_s=30, now=T + timedelta(seconds=51)) == 2
    # Its own lease, lapsed and taken again, is a new generation too: work begun under the old one must stop.
    assert acquire_lease("b", ttl_s=30, now=T + timedelta(seconds=90)) == 3


@pytest.mark.django_db
def test_a_move_under_a_lost_lease_is_refused_in_its_own_transaction(pending):
    generation = acquire_lease("old", ttl_s=30)
    release_lease("old")
    acquire_lease("new", ttl_s=30)
    with acting_under(Grant("old", generation)), pytest.raises(LeaseLost):
        services.transition_rollout(pending, Phase.PROGRESSING, actor="controller")
    assert Rollout.objects.get(pk=pending.pk).phase == Phase.PENDING
    assert not pending.events.filter(new=Phase.PROGRESSING).exists()
    with acting_under(Grant("new", generation + 1)):
        services.transition_rollout(pending, Phase.PROGRESSING, actor="controller")


@pytest.mark.django_db
def test_a_controller_past_its_renewal_deadline_makes_no_cluster_request(pending, kube_emulator):
    clock = FakeClock()
    keeper = LeaseKeeper("a", ttl_s=15, clock=clock)  # renews every 5 s, acts until 10 s after a renewal
    assert keeper.turn()
    grant = keeper.grant()
    controller = Controller(Cluster(kube_emulator.api_client()), NoMetrics(), max_workers=0, lease=keeper)
    clock.now = 9.9
    assert keeper.grant() == grant
    clock.now = 10.0  # the renewals failed (or the process was frozen): the lease may lapse in 5 s
    assert keeper.grant() is None
    mark = kube_emulator.mark()
    with acting_under(grant), pytest.raises(LeaseLost):
        controller.workloads.read_stable("any", "thing")
    with pytest.raises(LeaseLost):
        controller.tick()
    assert kube_emulator.requests(since=mark) == []


@pytest.mark.django_db
def test_a_keeper_that_sees_its_lease_taken_drops_it_and_cancels_queued_work():
    clock, lost = FakeClock(), []
    keeper = LeaseKeeper("a", ttl_s=15, clock=clock, on_lost=lost.append)
    assert keeper.turn()
    ControllerLease.objects.update(expires_at=T)  # it lapsed meanwhile ...
    assert acquire_lease("b", ttl_s=15) == 2  # ... and another controller took it
    assert not keeper.turn()
    assert (keeper.grant(), lost) == (None, [1])


@pytest.mark.django_db
def test_a_database_error_is_a_failed_renewal_not_a_lost_lease_until_the_deadline(monkeypatch):
    from django.db import OperationalError

    from rollouts import lease

    clock = FakeClock()
    keeper = LeaseKeeper("a", ttl_s=15, clock=clock)
    assert keeper.turn()

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")
    monkeypatch.setattr(lease, "acquire_lease", locked)
    clock.now = 6
    assert keeper.turn() and keeper.grant() is not None
    clock.now = 10
    assert not keeper.turn() and keeper.grant() is None


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def pending(resnet, make_version):
    make_version(resnet, "deployed", production=True)
    set_target(resnet)
    return services.start_rollout(resnet, make_version(resnet), actor="ci")


@pytest.mark.django_db
def test_runcontroller_once_without_the_lease_does_nothing(settings, kube_emulator):
    settings.MLCP_K8S_HOST = kube_emulator.url
    acquire_lease("someone-else", ttl_s=300)
    from io import StringIO
    err = StringIO()
    call_command("runcontroller", "--once", stderr=err)
    assert "another controller holds the lease" in err.getvalue()
    assert ControllerLease.objects.get().holder == "someone-else"


@pytest.mark.django_db(transaction=True)  # the loop drops a connection that failed, as a process would
def test_a_database_error_in_a_tick_is_retried_with_backoff_and_never_ends_the_loop(monkeypatch):
    from django.db import OperationalError

    from rollouts.management.commands import runcontroller

    monkeypatch.setattr(runcontroller, "FIRST_BACKOFF_S", 0.001)
    generation, stopping = acquire_lease("a", ttl_s=30), threading.Event()

    class Keeper:
        holder, changed = "a", threading.Event()

        def grant(self):
            return Grant("a", generation)

    class LockedTwice:
        ticks = 0

        def tick(self, now=None, *, grant=None):
            self.ticks += 1
            if self.ticks <= 2:
                raise OperationalError("database is locked")
            stopping.set()
            return {}

    controller = LockedTwice()
    runcontroller.Command()._loop(controller, Keeper(), 0.0, stopping)
    assert controller.ticks == 3


@pytest.mark.django_db(transaction=True)
def test_sqlite_writers_queue_for_the_lock_instead_of_failing_on_it(pending):
    """WAL and immediate transactions: threads that each read then write in one transaction (as a transition
    does) all commit; with deferred ones the second to upgrade its read lock failed with "database is locked"."""
    from django.db import connection as main

    from rollouts.models import RolloutEvent

    if main.vendor != "sqlite":
        pytest.skip("SQLite's locking")
    assert main.cursor().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    errors, start = [], threading.Barrier(6)

    def write_ten():
        from django.db import connection, transaction

        try:
            start.wait()
            for n in range(10):
                with transaction.atomic():
                    RolloutEvent.objects.filter(rollout=pending).count()
                    RolloutEvent.objects.create(rollout=pending, old="", new="pending", actor=f"t{n}")
        except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
            errors.append(exc)
        finally:
            connection.close()
    threads = [threading.Thread(target=write_ten) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert RolloutEvent.objects.filter(rollout=pending, actor__startswith="t").count() == 60
