"""The notification outbox: outcomes written with the state change, delivered afterwards, never lost.

Time is a clock the test moves (no sleeps); the receiver is a real HTTP server
on loopback that dedupes by `webhook-id`, as Standard Webhooks asks of one, so
"exactly once" below is what such a receiver processes.
"""

import base64
import json
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from datetime import timezone as tz
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from controlplane import metrics
from controlplane.errors import IllegalTransition
from rollouts import outbox, services
from rollouts.choices import DELIVERY_TRANSITIONS, Delivery
from rollouts.models import Notification, NotificationAttempt
from rollouts.notifications import DeliveryResult
from rollouts.outbox import Sender, retry_delay
from tests.factories import set_target
from tests.support.servers import free_port
from tests.support.webhooks import WebhookReceiver

pytestmark = pytest.mark.django_db
SECRET = "whsec_" + base64.b64encode(b"partner-shared-secret-32-bytes!!").decode()
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=tz.utc)


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **kwargs):
        self.now += timedelta(**kwargs)


@pytest.fixture(autouse=True)
def webhooks_allowed(settings):
    settings.MLCP_WEBHOOK_SECRET = SECRET
    settings.MLCP_WEBHOOK_ALLOW_PRIVATE = ["127.0.0.0/8"]


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def clock():
    return Clock()


def _sender(clock, **kwargs):
    # rng 1.0: every retry waits its full delay, so the test knows when the next one is due.
    return Sender(kwargs.pop("name", "test-sender"), clock=clock, rng=lambda: 1.0, **{
        "max_attempts": 5, "base_s": 10, "cap_s": 300, "lease_s": 60, **kwargs})


def _rolled_back(model, make_version, *, reason="error spike", now=T0):
    set_target(model)
    if not model.versions.filter(status="deployed").exists():
        make_version(model, "deployed", production=True)
    services.start_rollout(model, make_version(model), actor="ci", now=now)
    rollout = services.rollback(model, reason=reason, actor="oncall", now=now)
    return services.finish_retreat(rollout, now=now)


def _drain(sender, clock, *, passes=50):
    """Pass after pass, moving the clock to the next due retry, until nothing is left to deliver."""
    for _ in range(passes):
        sender.send_due()
        waiting = Notification.objects.filter(state__in=[Delivery.PENDING, Delivery.RETRYING, Delivery.SENDING])
        if not waiting.exists():
            return
        clock.now = max(clock.now, min(n.next_attempt_at for n in waiting if n.state != Delivery.SENDING))
    raise AssertionError("the outbox did not drain")


def _events(receiver):
    return sorted((json.loads(body)["event"], json.loads(body)["reason"]) for body in receiver.outcomes())


# ---------------------------------------------------------------- written with the state change

def test_an_outcome_is_written_with_the_state_change_and_sent_only_by_a_sender(resnet, make_version, receiver):
    resnet.notification_webhook = receiver.url
    resnet.save()
    rollout = _rolled_back(resnet, make_version)

    notification = Notification.objects.get(rollout=rollout)
    assert (notification.state, notification.event, notification.attempts) == (Delivery.PENDING,
                                                                                  "rollout.rolled_back", 0)
    assert notification.payload["reason"] == "error spike"
    assert receiver.received == []  # nothing was POSTed inline


def test_a_state_change_that_rolls_back_leaves_no_notification(resnet, make_version):
    resnet.notification_webhook = f"http://127.0.0.1:{free_port()}/hook"
    resnet.save()
    set_target(resnet)
    make_version(resnet, "deployed", production=True)
    services.start_rollout(resnet, make_version(resnet), actor="ci")
    rollout = services.rollback(resnet, reason="error spike", actor="oncall")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.finish_retreat(rollout)
        raise RuntimeError("the database failed before the commit")
    assert not Notification.objects.exists()


def test_a_model_without_a_webhook_gets_no_notification(resnet, make_version):
    _rolled_back(resnet, make_version)
    assert not Notification.objects.exists()


# ---------------------------------------------------------------- at least once, deduped by id

def test_a_receiver_down_for_the_first_attempts_receives_every_outcome_exactly_once(
        resnet, make_version, clock):
    down_for = 3
    receiver = WebhookReceiver(fail_first=down_for).start()
    try:
        resnet.notification_webhook = receiver.url
        resnet.save()
        _rolled_back(resnet, make_version, reason="first")
        _rolled_back(resnet, make_version, reason="second")
        _drain(_sender(clock), clock)
    finally:
        receiver.stop()

    assert _events(receiver) == [("rollout.rolled_back", "first"), ("rollout.rolled_back", "second")]
    assert [status for status in NotificationAttempt.objects.order_by("started_at", "id")
            .values_list("status_code", flat=True)][:down_for] == [503] * down_for
    assert set(Notification.objects.values_list("state", flat=True)) == {Delivery.DELIVERED}
    for headers, body in receiver.received:  # every retry is signed afresh, at its own (test clock) time
        at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz.utc)
        assert headers["webhook-signature"] == Webhook(SECRET).sign(headers["webhook-id"], at, body.decode())


def test_a_receiver_refusing_connections_gets_the_outcome_once_it_listens(resnet, make_version, clock):
    port = free_port()
    resnet.notification_webhook = f"http://127.0.0.1:{port}/hook"
    resnet.save()
    _rolled_back(resnet, make_version)
    sender = _sender(clock)
    for _ in range(2):
        sender.send_due()
        clock.advance(minutes=10)
    attempts = list(NotificationAttempt.objects.values_list("status_code", "error"))
    assert len(attempts) == 2 and all(code is None and "ConnectionRefused" in error for code, error in attempts)

    receiver = WebhookReceiver(port=port).start()
    try:
        _drain(sender, clock)
    finally:
        receiver.stop()
    assert _events(receiver) == [("rollout.rolled_back", "error spike")]


def test_every_attempt_of_one_outcome_carries_the_same_webhook_id(resnet, make_version, clock):
    receiver = WebhookReceiver(fail_first=2).start()
    try:
        resnet.notification_webhook = receiver.url
        resnet.save()
        rollout = _rolled_back(resnet, make_version)
        _drain(_sender(clock), clock)
    finally:
        receiver.stop()
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert len(receiver.received) == 3 and ids == {Notification.objects.get(rollout=rollout).message_id}


def test_each_attempt_is_recorded_with_its_time_status_and_sender(resnet, make_version, clock):
    receiver = WebhookReceiver(fail_first=1).start()
    try:
        resnet.notification_webhook = receiver.url
        resnet.save()
        _rolled_back(resnet, make_version)
        sender = _sender(clock, name="controller-a-outbox")
        sender.send_due()
        clock.advance(seconds=10)  # the first retry's full delay (base 10 s, rng 1.0)
        sender.send_due()
    finally:
        receiver.stop()
    first, second = NotificationAttempt.objects.order_by("number")
    assert (first.number, first.started_at, first.status_code, first.error) == (1, T0, 503, "HTTP 503")
    assert (second.number, second.started_at, second.status_code) == (2, T0 + timedelta(seconds=10), 204)
    assert first.sender == "controller-a-outbox" and first.duration_s >= 0


# ---------------------------------------------------------------- backoff and dead letters

def test_retries_back_off_exponentially_with_jitter_up_to_the_cap():
    full = [retry_delay(n, base_s=10, cap_s=3600, rng=lambda: 1.0).total_seconds() for n in range(1, 11)]
    assert full == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert retry_delay(4, base_s=10, cap_s=3600, rng=lambda: 0.0).total_seconds() == 40  # never below half
    assert retry_delay(20, base_s=10, cap_s=3600, rng=lambda: 0.5).total_seconds() == 2700


def test_a_retry_is_not_sent_before_its_time(resnet, make_version, clock):
    receiver = WebhookReceiver(fail_first=1).start()
    try:
        resnet.notification_webhook = receiver.url
        resnet.save()
        _rolled_back(resnet, make_version)
        sender = _sender(clock)
        sender.send_due()
        clock.advance(seconds=9)
        assert sender.send_due() == {}
        clock.advance(seconds=1)
        assert list(sender.send_due().values()) == [Delivery.DELIVERED]
    finally:
        receiver.stop()


def test_after_its_last_attempt_a_notification_is_dead_and_an_operator_can_requeue_it(
        resnet, make_version, clock):
    receiver = WebhookReceiver(fail_first=10).start()
    try:
        resnet.notification_webhook = receiver.url
        resnet.save()
        _rolled_back(resnet, make_version)
        sender = _sender(clock, max_attempts=3)
        _drain(sender, clock)
        notification = Notification.objects.get()
        assert (notification.state, notification.attempts, notification.last_error) == (Delivery.DEAD, 3,
                                                                                         "HTTP 503")
        receiver.fail_first = 0
        out = StringIO()
        call_command("sendnotifications", "--requeue-dead", stdout=out)
        assert "requeued 1" in out.getvalue()
        notification.refresh_from_db()
        clock.now = notification.next_attempt_at
        _drain(sender, clock)
    finally:
        receiver.stop()
    assert Notification.objects.get().state == Delivery.DELIVERED
    assert len(receiver.outcomes()) == 1


def test_an_address_it_may_not_reach_is_dead_at_once(resnet, make_version, clock, settings):
    resnet.notification_webhook = f"http://127.0.0.1:{free_port()}/hook"
    resnet.save()
    _rolled_back(resnet, make_version)
    settings.MLCP_WEBHOOK_ALLOW_PRIVATE = []  # loopback no longer allowed when it is delivered
    assert list(_sender(clock).send_due().values()) == [Delivery.DEAD]
    assert "not a public address" in Notification.objects.get().last_error


# ---------------------------------------------------------------- claims

def test_two_senders_never_hold_the_same_notification(resnet, make_version, clock):
    resnet.notification_webhook = f"http://127.0.0.1:{free_port()}/hook"
    resnet.save()
    _rolled_back(resnet, make_version)
    a, b = _sender(clock, name="a"), _sender(clock, name="b")
    assert len(a.claim()) == 1
    assert b.claim() == []
    clock.advance(seconds=59)
    assert b.claim() == []  # a's lease still holds


def test_a_sender_that_died_mid_send_is_taken_over_after_its_lease_and_its_late_result_is_ignored(
        resnet, make_version, clock, receiver):
    resnet.notification_webhook = receiver.url
    resnet.save()
    _rolled_back(resnet, make_version)
    a, b = _sender(clock, name="a"), _sender(clock, name="b")
    (notification, a_token), = a.claim()  # a claims, then stalls (or dies) before it settles the row

    clock.advance(seconds=60)
    (taken_over, b_token), = b.claim()
    assert b.send(taken_over, b_token) == Delivery.DELIVERED
    # a wakes up and POSTs the same message: the receiver has it already, and a cannot overwrite b's result.
    assert a.send(notification, a_token) == Delivery.DELIVERED
    assert len(receiver.received) == 2 and len(receiver.outcomes()) == 1
    assert Notification.objects.get().attempts == 2


def test_a_notification_whose_senders_keep_dying_is_dead_after_its_last_attempt(resnet, make_version, clock):
    resnet.notification_webhook = f"http://127.0.0.1:{free_port()}/hook"
    resnet.save()
    _rolled_back(resnet, make_version)
    sender = _sender(clock, max_attempts=2)
    for _ in range(2):
        assert len(sender.claim()) == 1  # and the sender dies
        clock.advance(seconds=61)
    assert sender.send_due() == {}
    notification = Notification.objects.get()
    assert notification.state == Delivery.DEAD and "last allowed attempt" in notification.last_error


def test_the_delivery_lifecycle_refuses_moves_off_its_table():
    assert DELIVERY_TRANSITIONS[Delivery.DELIVERED] == set()
    with pytest.raises(IllegalTransition):
        outbox._move(1, Delivery.PENDING, Delivery.DELIVERED, token="")


# ---------------------------------------------------------------- crashes and slow receivers

def test_the_controller_killed_between_commit_and_delivery_loses_nothing(resnet, make_version, clock, receiver):
    """The outcome commits with its notification; the process that committed it dies before any sender
    runs (nothing in memory survives); a fresh sender, in another process or later, delivers it once."""
    resnet.notification_webhook = receiver.url
    resnet.save()
    _rolled_back(resnet, make_version)
    assert receiver.received == []

    _drain(_sender(clock, name="after-restart"), clock)
    assert _events(receiver) == [("rollout.rolled_back", "error spike")]
    assert len(receiver.received) == 1


@pytest.mark.django_db(transaction=True)
def test_a_controller_process_killed_mid_delivery_loses_nothing(make_version, kube_emulator):
    """A real `runcontroller` ends a rollback and its sender thread is POSTing the outcome when the
    process is SIGKILLed; a fresh sender takes the row over once its lease has lapsed."""
    from k8s import Cluster
    from tests.rollouts.test_controller_scenarios import Scenario
    from tests.support.webserver import ROOT, server_env

    receiver = WebhookReceiver().start()
    receiver.hold = True  # the receiver has the request and has not answered when the controller dies
    cluster = Cluster(kube_emulator.api_client())
    s = Scenario("killed", make_version, cluster, kube_emulator)
    s.model.notification_webhook = receiver.url
    s.model.save()
    s.start()
    services.rollback(s.model, reason="error spike", actor="oncall")
    controller = subprocess.Popen(
        [sys.executable, "manage.py", "runcontroller", "--interval", "0.1"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=server_env(MLCP_K8S_HOST=kube_emulator.url, MLCP_WEBHOOK_SECRET=SECRET,
                       MLCP_WEBHOOK_ALLOW_PRIVATE="127.0.0.0/8", MLCP_WEBHOOK_LEASE_S="600"))
    try:
        assert receiver.entered.wait(timeout=120), "the controller never sent the outcome"
    finally:
        controller.send_signal(signal.SIGKILL)
        controller.wait()
    try:
        s.rollout.refresh_from_db()
        notification = Notification.objects.get(rollout=s.rollout)
        assert (s.rollout.phase, notification.state) == ("rolled_back", Delivery.SENDING)
        receiver.release.set()

        after_lease = Clock(timezone.now() + timedelta(seconds=601))
        assert _sender(after_lease, name="replacement").send_due() == {notification.pk: Delivery.DELIVERED}
    finally:
        receiver.stop()
    assert _events(receiver) == [("rollout.rolled_back", "error spike")]
    cluster.close()


class NoMetrics:
    """A retreat reads no metrics; any call would be a bug in the test's premise."""

    def __getattr__(self, name):
        raise AssertionError(f"the controller asked for metrics ({name}) during a retreat")


@pytest.mark.django_db(transaction=True)
def test_a_slow_receiver_never_stalls_a_controller_tick(make_version, kube_emulator):
    """The sender thread is stuck in a POST the receiver holds; the controller's next tick still ends a
    rollback, and its outcome waits in the outbox behind the first."""
    from k8s import Cluster
    from rollouts.controller import Controller
    from tests.rollouts.test_controller_scenarios import Scenario

    receiver = WebhookReceiver().start()
    receiver.hold = True
    cluster = Cluster(kube_emulator.api_client())
    controller = Controller(cluster, NoMetrics(), max_workers=0)
    first, second = (Scenario(name, make_version, cluster, kube_emulator) for name in ("slow-a", "slow-b"))
    for s in (first, second):
        s.model.notification_webhook = receiver.url
        s.model.save()
        s.start()
    thread, stop = Sender("thread").start(poll_s=0.05)
    try:
        services.rollback(first.model, reason="first", actor="oncall")
        controller.tick(timezone.now())
        assert receiver.entered.wait(timeout=120), "the sender never reached the receiver"

        services.rollback(second.model, reason="second", actor="oncall")
        outcomes = controller.tick(timezone.now())  # returns while the first POST hangs
        assert outcomes[second.rollout.pk] == "rolled_back"
        assert receiver.received == []  # the receiver has answered nothing yet
        assert Notification.objects.get(rollout=second.rollout).state == Delivery.PENDING
    finally:
        receiver.release.set()
        stop.set()
        thread.join()
        receiver.stop()
        cluster.close()


# ---------------------------------------------------------------- for operators

def test_sendnotifications_delivers_what_is_due(resnet, make_version, receiver):
    resnet.notification_webhook = receiver.url
    resnet.save()
    rollout = _rolled_back(resnet, make_version, now=None)
    out = StringIO()
    call_command("sendnotifications", stdout=out)
    pk = Notification.objects.get(rollout=rollout).pk
    assert out.getvalue().strip() == f"notification {pk}: delivered"


def test_metrics_show_the_outbox_by_state(resnet, make_version, client, settings, monkeypatch):
    settings.MLCP_METRICS_CACHE_S, settings.MLCP_METRICS_TOKEN = 0, ""
    monkeypatch.setattr(metrics, "_rendered", metrics._Rendered())
    resnet.notification_webhook = f"http://127.0.0.1:{free_port()}/hook"
    resnet.save()
    _rolled_back(resnet, make_version, now=None)
    Sender(post=lambda *args, **kwargs: DeliveryResult(error="refused", permanent=True)).send_due()
    _rolled_back(resnet, make_version, now=None)

    text = client.get("/metrics").content.decode()
    assert 'mlcp_webhook_notifications{state="dead"} 1.0' in text
    assert 'mlcp_webhook_notifications{state="pending"} 1.0' in text
    assert "mlcp_webhook_oldest_undelivered_seconds" in text
