"""`manage.py sendnotifications [--loop] [--requeue-dead [ID ...]]`: deliver the notification outbox by hand.

The controller's own sender thread does this continuously (`rollouts.outbox`);
this is for operators: one pass now, a standalone sender (`--loop`), or a
second chance for dead letters once their receiver is fixed.
"""

import threading

from django.core.management.base import BaseCommand

from rollouts import outbox


class Command(BaseCommand):
    help = "Deliver due rollout notifications (one pass, or --loop), or requeue dead ones."

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="keep sending until interrupted")
        parser.add_argument("--poll", type=float, default=2.0, help="seconds between passes that found nothing")
        parser.add_argument("--requeue-dead", nargs="*", type=int, metavar="ID",
                            help="make dead notifications (all, or these ids) due again with fresh attempts")

    def handle(self, *args, loop, poll, requeue_dead: list[int] | None, **options):
        if requeue_dead is not None:
            self.stdout.write(f"requeued {outbox.requeue_dead(requeue_dead)} dead notification(s)")
            return
        sender = outbox.Sender()
        if loop:
            try:
                sender.run(threading.Event(), poll_s=poll)
            except KeyboardInterrupt:
                pass
            return
        for pk, state in sorted(sender.send_due().items()):
            self.stdout.write(f"notification {pk}: {state}")

