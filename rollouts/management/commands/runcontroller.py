"""`manage.py runcontroller [--once] [--interval S]`: the rollout controller loop.

Acts only while it holds the database lease, so a second replica waits as a
standby, trying to take it every MLCP_CONTROLLER_LEASE_POLL_S. The lease is
kept by a thread of its own (`rollouts.lease.LeaseKeeper`), never once a tick,
so its lifetime (MLCP_CONTROLLER_LEASE_S) does not depend on how long a tick
takes; a leader that cannot renew stops acting before it can expire. SIGTERM
and SIGINT end the loop: from that moment no new step begins (not even in the
tick under way), queued work is dropped, the steps being applied finish, and
the lease is released, so a standby takes over within
its poll instead of waiting for the lease to expire. A database error is logged
and retried with backoff; it never ends the loop.

The leader records a heartbeat on the lease row each tick (when the tick
started and finished, how long it took, how many rollouts it reconciled),
which the API, the UI and /metrics read. Every turn of the loop, leader or
standby, also writes MLCP_CONTROLLER_HEARTBEAT_FILE when set, for the pod's
liveness probe (`manage.py controllerhealth`). The cluster and Prometheus come
from settings (MLCP_K8S_HOST or KUBECONFIG or in-cluster; PROMETHEUS_URL).
Beside the loop, every replica runs the webhook outbox's sender in a thread of
its own (`rollouts.outbox`), so a slow receiver never stalls a tick; `--once`
does not (`manage.py sendnotifications` does).
"""

import _thread
import logging
import os
import signal
import socket
import threading
import time
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection

from rollouts.controller import Controller, release_lease, tick_holding_lease, tick_with_heartbeat
from rollouts.lease import LeaseKeeper, LeaseLost
from rollouts.liveness import touch_local_heartbeat
from rollouts.outbox import Sender

log = logging.getLogger("rollouts.controller")
# Backoff after a failed turn of the loop (a database that is down or locked), doubling up to the cap.
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0


class Command(BaseCommand):
    help = "Run the rollout controller: one reconcile of every active rollout per tick."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one tick, then exit")
        parser.add_argument("--interval", type=float, default=10.0, help="seconds between ticks")
        parser.add_argument("--workers", type=int, default=4,
                            help="rollouts reconciled in parallel, in each of the two lanes")
        parser.add_argument("--rollout-timeout", type=float, default=None,
                            help="seconds a tick waits for its rollouts (default: the interval); those still "
                                 "running go on in the background and the next tick skips them")

    def handle(self, *args, once, interval, workers, rollout_timeout, **options):
        holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        controller = Controller.from_settings(max_workers=workers, rollout_timeout_s=rollout_timeout or interval)
        # Says who made each request in the API server's audit log (and in the emulator's request log).
        controller.cluster.api_client.user_agent = f"mlcp-controller/{holder}"
        self._loop_turned(holder, leading=False)
        if once:
            return self._once(controller, holder)
        stopping = threading.Event()
        keeper = LeaseKeeper(holder, ttl_s=settings.MLCP_CONTROLLER_LEASE_S,
                             poll_s=settings.MLCP_CONTROLLER_LEASE_POLL_S, on_lost=controller.cancel_queued)
        controller.lease = keeper

        def wake():
            stopping.set()
            keeper.changed.set()  # wake the loop now

        def stop(signum, frame):
            # At once, not when the loop ends: the tick under way must not start a step the successor
            # would then run beside it (an on-call rollback asked for at the SIGTERM is the standby's).
            controller.refuse_new_steps()
            # Setting an Event takes its lock, which this (the main) thread may hold at this very bytecode,
            # inside `changed.wait()` or `clear()`: taken here, it would deadlock. A bare thread of its own
            # (no `threading` locks to start it) waits for the lock instead.
            _thread.start_new_thread(wake, ())

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        sending, stop_sending = Sender(f"{holder}-outbox").start()
        keeper.start()
        try:
            self._loop(controller, keeper, interval, stopping)
        finally:
            # The steps under way end first, so the successor never acts beside them; then the lease goes.
            if not controller.stop(timeout_s=settings.MLCP_CONTROLLER_LEASE_S / 2):
                log.warning("stopping: steps still under way; the lease's fence stops them")
            keeper.release()
            stop_sending.set()
            sending.join()

    def _loop(self, controller, keeper, interval, stopping):
        backoff = 0.0
        while not stopping.is_set():
            started = time.monotonic()
            grant = keeper.grant()
            try:
                if grant is not None:
                    for pk, outcome in sorted(tick_with_heartbeat(controller, grant).items()):
                        self.stdout.write(f"rollout {pk}: {outcome}")
                backoff = 0.0
            except LeaseLost:
                pass  # the keeper noticed and says so; the loop waits for the lease again
            except Exception:  # a database outage must not end the loop, nor the standby's
                backoff = min(MAX_BACKOFF_S, backoff * 2 or FIRST_BACKOFF_S)
                log.exception("controller loop: tick failed; retrying in %.1f s", backoff)
                connection.close()
            finally:
                close_old_connections()
            self._loop_turned(keeper.holder, leading=grant is not None)
            # Ticks keep their cadence; a standby wakes as soon as it takes the lease, everyone on a signal.
            wait = backoff or max(0.0, interval - (time.monotonic() - started))
            keeper.changed.wait(wait)
            keeper.changed.clear()

    def _once(self, controller, holder):
        try:
            results = tick_holding_lease(controller, holder, ttl_s=settings.MLCP_CONTROLLER_LEASE_S)
            if results is None:
                self.stderr.write("another controller holds the lease; nothing done")
                return
            for pk, outcome in sorted(results.items()):
                self.stdout.write(f"rollout {pk}: {outcome}")
            self._loop_turned(holder, leading=True)
        finally:
            controller.stop()
            release_lease(holder)

    @staticmethod
    def _loop_turned(holder: str, *, leading: bool) -> None:
        if settings.MLCP_CONTROLLER_HEARTBEAT_FILE:
            touch_local_heartbeat(settings.MLCP_CONTROLLER_HEARTBEAT_FILE, holder=holder, leading=leading,
                                  at=time.time())
