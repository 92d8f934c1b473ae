"""`manage.py controllerhealth [--any]`: exit 0 when the controller is alive, 1 when it is not.

Without `--any` it answers for this pod, for its Kubernetes liveness probe:
has this process's loop (leader or standby) turned within
MLCP_CONTROLLER_STALE_S, by MLCP_CONTROLLER_HEARTBEAT_FILE? No database is
read, so a database outage does not restart the controller. With `--any` it
answers for the whole installation from the lease row's heartbeat: is any
controller acting? (for people and cron jobs; the API and UI say the same).
"""

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from rollouts.liveness import controller_liveness, local_heartbeat_age


class Command(BaseCommand):
    help = "Exit non-zero when the controller's heartbeat is stale (this pod's, or with --any, any controller's)."

    def add_arguments(self, parser):
        parser.add_argument("--any", action="store_true", dest="any_controller",
                            help="ask the database whether any controller is acting, not this pod")

    def handle(self, *args, any_controller, **options):
        stale_after_s = settings.MLCP_CONTROLLER_STALE_S
        if any_controller:
            liveness = controller_liveness()
            if not liveness.alive:
                raise CommandError(liveness.warning.replace("this rollout", "active rollouts"), returncode=1)
            self.stdout.write(f"alive: {liveness.holder} ticked {liveness.stale_for_s:.0f} s ago")
            return
        path = settings.MLCP_CONTROLLER_HEARTBEAT_FILE
        if not path:
            raise CommandError("MLCP_CONTROLLER_HEARTBEAT_FILE is not set, so runcontroller writes no heartbeat "
                               "here", returncode=2)
        age = local_heartbeat_age(path, time.time())
        if age is None:
            raise CommandError(f"no heartbeat in {path}: runcontroller has not turned its loop yet", returncode=1)
        if age > stale_after_s:
            raise CommandError(f"this controller's loop last turned {age:.0f} s ago (stale after "
                               f"{stale_after_s} s)", returncode=1)
        self.stdout.write(f"alive: loop turned {age:.0f} s ago")
