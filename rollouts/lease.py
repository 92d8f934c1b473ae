"""The controller lease and its fence: one controller acts at a time, and one that lost the lease writes nothing.

The lease is one row taken by compare-and-set; its `generation` (the fencing
token) grows each time it changes hands. A `LeaseKeeper` takes and renews it
from a thread of its own, every third of its lifetime, so how long a tick takes
never matters; it stops acting a renewal period before the lease can expire, so
a controller that cannot renew, or was frozen past its lease, knows it before
anyone else may act. Work runs under a `Grant` (`acting_under`): database
writes check the lease row in their own transaction (`check_fence`, the row
locked, so a takeover waits for them and none commits after one), cluster calls
check the grant, without I/O, before every attempt (`FencedCluster`).

What no check can close: a cluster call that passed its check and was then
frozen before it reached the API server (Kubernetes takes no fencing token).
The window is one statement long; the renewal margin covers slow scheduling,
not a process stopped exactly there.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from k8s import Cluster
from rollouts.models import ControllerLease

log = logging.getLogger(__name__)
LEASE_PK = 1


class LeaseLost(Exception):
    """This controller no longer holds the lease it acted under: it must write nothing more.

    Not an `MlcpError` on purpose: nothing may answer it by writing (a message on
    the rollout, a retry note); the work that meets it just stops.
    """


# --------------------------------------------------------------- the row

def acquire_lease(holder: str, *, ttl_s: float, now: datetime | None = None) -> int | None:
    """Take the lease, or renew it while `holder` still holds it; its generation, or None if another holds it.

    Taking a lapsed or released lease starts a new generation, even for its old
    holder: work begun under the old one must not go on.
    """
    now = now or timezone.now()
    expires = now + timedelta(seconds=ttl_s)
    with transaction.atomic():
        row = (ControllerLease.objects.select_for_update().filter(pk=LEASE_PK)
               .values("holder", "expires_at", "generation").first())
        if row is None:
            try:
                with transaction.atomic():
                    ControllerLease.objects.create(pk=LEASE_PK, holder=holder, expires_at=expires, generation=1)
            except IntegrityError:
                return None  # another controller created it first
            return 1
        if row["expires_at"] > now:
            if row["holder"] != holder:
                return None
            ControllerLease.objects.filter(pk=LEASE_PK).update(expires_at=expires)
            return row["generation"]
        generation = row["generation"] + 1
        ControllerLease.objects.filter(pk=LEASE_PK).update(holder=holder, expires_at=expires, generation=generation)
        return generation


def release_lease(holder: str, generation: int | None = None) -> None:
    """Give the lease up at once (on shutdown), so a successor need not wait for it to expire."""
    rows = ControllerLease.objects.filter(pk=LEASE_PK, holder=holder)
    if generation is not None:
        rows = rows.filter(generation=generation)
    rows.update(expires_at=timezone.now() - timedelta(seconds=1))


# ------------------------------------------------------------- the fence

@dataclass(frozen=True)
class Grant:
    """The right to act under one generation of the lease, as long as its keeper says it holds."""

    holder: str
    generation: int
    keeper: "LeaseKeeper | None" = field(default=None, compare=False, repr=False)

    def require(self) -> None:
        """Raise `LeaseLost` unless this generation still holds, by the keeper's clock. No I/O."""
        if self.keeper is not None and not self.keeper.holds(self.generation):
            raise LeaseLost(f"{self.holder} no longer holds lease generation {self.generation}")


_acting: contextvars.ContextVar[Grant | None] = contextvars.ContextVar("acting_under", default=None)


@contextmanager
def acting_under(grant: Grant | None):
    """Run the block's writes under `grant` (None: unfenced, as a person's request is)."""
    token = _acting.set(grant)
    try:
        yield grant
    finally:
        _acting.reset(token)


def check_fence() -> int | None:
    """Inside a write's transaction: raise `LeaseLost` unless the grant the caller acts under still holds the row.

    Locks the lease row until the transaction ends, so a takeover (which writes
    that row) cannot slip between this check and the commit. Returns the
    generation; None outside a controller, where there is nothing to check.
    """
    grant = _acting.get()
    if grant is None:
        return None
    grant.require()
    held = list(ControllerLease.objects.select_for_update().filter(
        pk=LEASE_PK, holder=grant.holder, generation=grant.generation, expires_at__gt=timezone.now(),
    ).values_list("pk", flat=True))
    if not held:
        raise LeaseLost(f"{grant.holder} lost lease generation {grant.generation} before writing")
    return grant.generation


class FencedCluster(Cluster):
    """A `Cluster` whose every call, each retry included, first checks the grant its thread acts under."""

    @classmethod
    def around(cls, cluster: Cluster) -> "FencedCluster":
        return cls(cluster.api_client, request_timeout=cluster.request_timeout, retry=cluster.retry)

    def call(self, what, operation, **context):
        grant = _acting.get()
        if grant is None:
            return super().call(what, operation, **context)

        def fenced():
            grant.require()
            return operation()
        return super().call(what, fenced, **context)


# ------------------------------------------------------------ the keeper

class LeaseKeeper:
    """Takes and keeps the lease from a thread of its own; says, without I/O, whether a generation still holds.

    Renews every `renew_every_s` (a third of the lifetime by default) and counts
    a generation as holding until `renew_every_s` before the lease it last
    renewed can expire, by this process's monotonic clock: a renewal that fails,
    or a process frozen past that point, stops every check (`Grant.require`)
    before another controller may take the lease. Database errors are a failed
    renewal, retried with backoff; only the deadline ends the grant.
    """

    def __init__(self, holder: str, *, ttl_s: float, renew_every_s: float | None = None, poll_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_lost: Callable[[int], None] | None = None) -> None:
        self.holder, self.ttl_s = holder, ttl_s
        self.renew_every_s = renew_every_s or ttl_s / 3
        self.poll_s = poll_s
        self.clock = clock
        self.on_lost = on_lost
        # Set whenever holding changes (and by whoever wants the loop awake, e.g. a signal handler).
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._valid_until = 0.0
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holds(self, generation: int) -> bool:
        with self._lock:
            return self._generation == generation and self.clock() < self._valid_until

    def grant(self) -> Grant | None:
        """The grant to act under now; None while this controller does not hold the lease."""
        with self._lock:
            if self._generation is None or self.clock() >= self._valid_until:
                return None
            return Grant(self.holder, self._generation, self)

    def turn(self) -> bool:
        """One attempt to take or renew the lease; whether this controller holds it afterwards."""
        started = self.clock()
        try:
            generation, failed = acquire_lease(self.holder, ttl_s=self.ttl_s), False
        except DatabaseError as exc:
            log.warning("controller lease: database error, retrying: %s", exc)
            connection.close()  # a broken connection is not reused by the next attempt
            generation, failed = None, True
        lost = None
        with self._lock:
            held = self._generation
            if failed:
                self._failures += 1
                if held is not None and self.clock() >= self._valid_until:
                    lost, self._generation = held, None
            else:
                self._failures = 0
                if held is not None and generation != held:
                    lost = held
                self._generation = generation
                if generation is not None:
                    self._valid_until = started + self.ttl_s - self.renew_every_s
            holding = self._generation is not None
        if lost is not None:
            log.warning("controller lease: generation %s lost; in-flight work is cancelled", lost)
            if self.on_lost is not None:
                self.on_lost(lost)
        if holding != (held is not None) or lost is not None:
            self.changed.set()
        return holding

    def start(self) -> "LeaseKeeper":
        self._thread = threading.Thread(target=self._run, name="controller-lease", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                holding = self.turn()
            except Exception:  # the keeper must outlive any one failure; the deadline guards the rest
                log.exception("controller lease: renewal failed")
                holding = False
            finally:
                close_old_connections()
            if self._failures:
                delay = min(self.renew_every_s / 2, self.poll_s * 2 ** min(self._failures - 1, 5)) or self.poll_s
            else:
                delay = self.renew_every_s if holding else self.poll_s
            self._stop.wait(delay)

    def release(self) -> None:
        """Stop renewing and give the lease up at once, so a standby takes over without waiting for it to expire."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            generation, self._generation = self._generation, None
        if generation is None:
            return
        try:
            release_lease(self.holder, generation)
        except DatabaseError as exc:  # it then expires by itself
            log.warning("controller lease: could not release generation %s: %s", generation, exc)
        finally:
            connection.close()


def require_grant() -> None:
    """Before a step is applied: raise `LeaseLost` if the grant this thread acts under no longer holds. No I/O."""
    grant = _acting.get()
    if grant is not None:
        grant.require()
