"""The notification outbox: a rollout's outcome is written with the state change and delivered afterwards.

Posting inline after the commit lost the webhook when the process died in
between, and let a slow receiver stall the controller's tick. Instead
`enqueue` writes a `Notification` row inside the transaction that ends the
rollout (both happen or neither does), and a `Sender`, in its own thread,
claims due rows and POSTs them (`rollouts.notifications.deliver`).

Delivery is at least once, with one `webhook-id` per row on every attempt:
a receiver that ignores an id it has already seen, as Standard Webhooks asks
of it, gets each outcome exactly once. A second POST of the same row happens
only when a sender's lease lapsed mid-send and another sender took it over.

- Lifecycle: `rollouts.choices.DELIVERY_TRANSITIONS` (pending, sending,
  retrying, delivered, dead); every move is a compare-and-set on the state and
  the claim token, so two senders never hold one row, and the sender whose
  lease lapsed cannot overwrite its successor's result.
- Claim: a due row (pending, or retrying past `next_attempt_at`), or one whose
  sender died (sending past `lease_expires_at`); each claim counts an attempt.
- Backoff: `MLCP_WEBHOOK_RETRY_BASE_S` doubling per attempt up to
  `MLCP_WEBHOOK_RETRY_CAP_S`, each delay drawn between half and all of that
  ("equal jitter"), so receivers coming back are not hit by every sender at
  once; dead after `MLCP_WEBHOOK_MAX_ATTEMPTS`, or at once when no retry can
  help (an address it may not reach, no secret). An operator requeues dead
  letters with `manage.py sendnotifications --requeue-dead`.
- Every finished attempt is a `NotificationAttempt` row (start, duration,
  HTTP status or error, sender).

Where it runs: a thread beside the controller's loop in `runcontroller`, in
every replica, leader or standby (the claims make several senders safe). The
controller is the process that is always there when outcomes happen; a thread
of its own keeps a slow receiver out of the tick. Celery was not chosen: the
deployed workers consume only the `gates` queue and no beat runs in the
manifests. `manage.py sendnotifications` drains the outbox by hand.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F, Q
from django.utils import timezone

from controlplane.errors import IllegalTransition
from rollouts.choices import CLAIMABLE, DELIVERY_TRANSITIONS, Delivery
from rollouts.models import Notification, NotificationAttempt, Rollout
from rollouts.notifications import DeliveryResult, deliver, new_message_id, outcome_payload

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
_LOG_LEVEL = {Delivery.DELIVERED: logging.INFO, Delivery.RETRYING: logging.WARNING, Delivery.DEAD: logging.ERROR}


def enqueue(rollout: Rollout, event: str, reason: str = "", evidence: dict | None = None, *,
            now: datetime | None = None) -> Notification | None:
    """Write the outcome for the model's webhook, in the caller's transaction; None when it has no webhook."""
    url = rollout.model.notification_webhook
    if not url:
        return None
    now = now or timezone.now()
    return Notification.objects.create(
        rollout=rollout, event=event, url=url, payload=outcome_payload(rollout, event, reason, evidence),
        message_id=new_message_id(), state=Delivery.PENDING, next_attempt_at=now, created_at=now)


def retry_delay(attempt: int, *, base_s: float, cap_s: float, rng: Callable[[], float] = random.random) -> timedelta:
    """How long to wait after failed attempt number `attempt` (1 for the first): equal jitter on a capped doubling.

    With base 10 s and cap 3600 s: after the first failure 5 to 10 s, after the
    fourth 40 to 80 s, after the tenth and later 1800 to 3600 s.
    """
    ceiling = min(cap_s, base_s * 2 ** (attempt - 1))
    return timedelta(seconds=ceiling / 2 + rng() * ceiling / 2)


def _move(pk: int, old: str, new: str, *, token: str, claimable: Q | None = None, **fields) -> bool:
    """Move notification `pk` from `old` to `new` if it is still `old` under claim `token`; False if not."""
    if new not in DELIVERY_TRANSITIONS[old]:
        raise IllegalTransition(f"notification {pk} cannot go from {old} to {new}", from_state=old, to_state=new)
    rows = Notification.objects.filter(pk=pk, state=old, claim_token=token)
    if claimable is not None:
        rows = rows.filter(claimable)
    return rows.update(state=new, **fields) == 1


class Sender:
    """Claims due notifications and delivers them; several may run at once, in threads or processes."""

    def __init__(self, name: str | None = None, *, clock: Clock = timezone.now,
                 rng: Callable[[], float] = random.random, monotonic: Callable[[], float] = time.monotonic,
                 post: Callable[..., DeliveryResult] = deliver, max_attempts: int | None = None,
                 base_s: float | None = None, cap_s: float | None = None, lease_s: float | None = None):
        self.name = name or f"sender-{uuid.uuid4().hex[:8]}"
        self.clock, self.rng, self.monotonic, self.post = clock, rng, monotonic, post
        self.max_attempts = max_attempts or settings.MLCP_WEBHOOK_MAX_ATTEMPTS
        self.base_s = base_s if base_s is not None else settings.MLCP_WEBHOOK_RETRY_BASE_S
        self.cap_s = cap_s if cap_s is not None else settings.MLCP_WEBHOOK_RETRY_CAP_S
        self.lease_s = lease_s if lease_s is not None else settings.MLCP_WEBHOOK_LEASE_S

    # ------------------------------------------------------------ one pass

    def send_due(self, limit: int = 50) -> dict[int, str]:
        """Deliver up to `limit` due notifications once each: {pk: the state it was left in}.

        One claim at a time, so a slow receiver does not run out the leases of
        rows claimed beside it.
        """
        self._bury_abandoned()
        settled = {}
        for _ in range(limit):
            claimed = self.claim(1)
            if not claimed:
                break
            (notification, token), = claimed
            settled[notification.pk] = self.send(notification, token)
        return settled

    def claim(self, limit: int = 50) -> list[tuple[Notification, str]]:
        """The due notifications this sender won, each with its claim token (compare-and-set, one by one)."""
        now = self.clock()
        due = (Q(state__in=CLAIMABLE, next_attempt_at__lte=now)
               | Q(state=Delivery.SENDING, lease_expires_at__lte=now, attempts__lt=self.max_attempts))
        candidates = (Notification.objects.filter(due).order_by("next_attempt_at", "id")
                      .values_list("pk", "state", "claim_token")[:limit])
        won = []
        for pk, state, old_token in candidates:
            token = uuid.uuid4().hex
            if _move(pk, state, Delivery.SENDING, token=old_token, claimable=due, claim_token=token,
                     lease_expires_at=now + timedelta(seconds=self.lease_s), attempts=F("attempts") + 1):
                won.append((Notification.objects.get(pk=pk), token))
        return won

    def send(self, notification: Notification, token: str) -> str:
        """POST a claimed notification once, record the attempt, and settle it: delivered, retrying or dead."""
        started_at, started = self.clock(), self.monotonic()
        result = self.post(notification.url, notification.message_id, notification.payload, at=started_at)
        duration_s = self.monotonic() - started
        NotificationAttempt.objects.create(notification=notification, number=notification.attempts,
                                           started_at=started_at, duration_s=duration_s, status_code=result.status,
                                           error=result.error, sender=self.name)
        now = self.clock()
        if result.delivered:
            new, fields = Delivery.DELIVERED, {"delivered_at": now, "last_error": ""}
        elif result.permanent or notification.attempts >= self.max_attempts:
            new, fields = Delivery.DEAD, {"last_error": result.error}
        else:
            delay = retry_delay(notification.attempts, base_s=self.base_s, cap_s=self.cap_s, rng=self.rng)
            new, fields = Delivery.RETRYING, {"last_error": result.error, "next_attempt_at": now + delay}
        if not _move(notification.pk, Delivery.SENDING, new, token=token, claim_token="", lease_expires_at=None,
                     **fields):
            # Our lease lapsed mid-send and another sender holds the row now: its result stands.
            log.warning("notification %s: lost its claim while sending (attempt %s: %s)", notification.pk,
                        notification.attempts, result.status or result.error)
            return Notification.objects.get(pk=notification.pk).state
        log.log(_LOG_LEVEL[new], "notification %s (%s of rollout %s) to %s, attempt %s: %s -> %s", notification.pk,
                notification.event, notification.rollout_id, notification.url, notification.attempts,
                result.status or result.error, new)
        return new

    def _bury_abandoned(self) -> int:
        """A row whose sender died on its last allowed attempt is dead, not claimable forever (SENDING -> DEAD)."""
        return Notification.objects.filter(
            state=Delivery.SENDING, lease_expires_at__lte=self.clock(), attempts__gte=self.max_attempts).update(
            state=Delivery.DEAD, claim_token="", lease_expires_at=None,
            last_error="its sender stopped during the last allowed attempt")

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event, *, poll_s: float = 2.0) -> None:
        """Send until `stop` is set, waiting `poll_s` between passes that found nothing due."""
        try:
            while not stop.is_set():
                close_old_connections()
                try:
                    busy = bool(self.send_due())
                except Exception:  # a database outage must not end the thread; the next pass tries again
                    log.exception("notification sender %s: pass failed", self.name)
                    busy = False
                if not busy:
                    stop.wait(poll_s)
        finally:
            connection.close()

    def start(self, *, poll_s: float = 2.0) -> tuple[threading.Thread, threading.Event]:
        """`run` in a daemon thread; set the returned event (then join the thread) to stop it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), kwargs={"poll_s": poll_s},
                                  name=f"mlcp-{self.name}", daemon=True)
        thread.start()
        return thread, stop


def requeue_dead(pks: list[int] | None = None, *, now: datetime | None = None) -> int:
    """Give dead notifications (all, or those in `pks`) their attempts back and make them due now."""
    rows = Notification.objects.filter(state=Delivery.DEAD)
    if pks:
        rows = rows.filter(pk__in=pks)
    return rows.update(state=Delivery.RETRYING, attempts=0, next_attempt_at=now or timezone.now(), claim_token="",
                       lease_expires_at=None)
