"""`manage.py runcontroller [--once] [--interval S]`: the rollout controller loop.

Acts only while it holds the database lease, so a second replica waits as a
standby. The leader records a heartbeat on the lease row each tick (when the
tick started and finished, how long it took, how many rollouts it reconciled),
which the API, the UI and /metrics read. Every turn of the loop, leader or
standby, also writes MLCP_CONTROLLER_HEARTBEAT_FILE when set, for the pod's
liveness probe (`manage.py controllerhealth`). The cluster and Prometheus come
from settings (MLCP_K8S_HOST or KUBECONFIG or in-cluster; PROMETHEUS_URL).
Beside the loop, every replica runs the webhook outbox's sender in a thread of
its own (`rollouts.outbox`), so a slow receiver never stalls a tick; `--once`
does not (`manage.py sendnotifications` does).
"""

import os
import socket
import time
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand

from rollouts.controller import Controller, release_lease, tick_holding_lease
from rollouts.liveness import touch_local_heartbeat
from rollouts.outbox import Sender


class Command(BaseCommand):
    help = "Run the rollout controller: one reconcile of every active rollout per tick."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one tick, then exit")
        parser.add_argument("--interval", type=float, default=10.0, help="seconds between ticks")
        parser.add_argument("--workers", type=int, default=4, help="rollouts reconciled in parallel")
        parser.add_argument("--rollout-timeout", type=float, default=60.0,
                            help="seconds one rollout may take before the tick moves on without it")

    def handle(self, *args, once, interval, workers, rollout_timeout, **options):
        holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # Long enough to survive one slow tick; short enough that a standby takes over quickly.
        ttl_s = max(30.0, 3 * interval + rollout_timeout)
        controller = Controller.from_settings(max_workers=workers, rollout_timeout_s=rollout_timeout)
        self._loop_turned(holder, leading=False)
        sending, stop_sending = (None, None) if once else Sender(f"{holder}-outbox").start()
        try:
            while True:
                results = tick_holding_lease(controller, holder, ttl_s=ttl_s)
                if results is not None:
                    for pk, outcome in sorted(results.items()):
                        self.stdout.write(f"rollout {pk}: {outcome}")
                elif once:
                    self.stderr.write("another controller holds the lease; nothing done")
                self._loop_turned(holder, leading=results is not None)
                if once:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
        finally:
            if stop_sending is not None:
                stop_sending.set()
                sending.join()
            release_lease(holder)

    @staticmethod
    def _loop_turned(holder: str, *, leading: bool) -> None:
        if settings.MLCP_CONTROLLER_HEARTBEAT_FILE:
            touch_local_heartbeat(settings.MLCP_CONTROLLER_HEARTBEAT_FILE, holder=holder, leading=leading,
                                  at=time.time())
