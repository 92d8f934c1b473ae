"""`manage.py verifyblobs`: re-hash stored blobs now, mark altered ones tampered, fail when any are."""

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat

from registry.tasks import verify_stored_blobs


class Command(BaseCommand):
    help = ("Re-hash stored blobs and mark those whose bytes no longer match their digest as tampered "
            "(refused for download). Exits non-zero when any blob is tampered or missing.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=0, metavar="SECONDS",
                            help="only blobs not verified within this many seconds (default: all)")

    def handle(self, older_than=0, **options):
        if older_than < 0:
            raise CommandError("--older-than is a number of seconds, 0 or more")

        def progress(position, total, blob, outcome):
            line = f"[{position}/{total}] sha256:{blob.digest} {filesizeformat(blob.size)}: {outcome}"
            if outcome == "ok":
                self.stdout.write(line)
            else:
                self.stderr.write(line + (f" (now hashes to sha256:{blob.tampered_digest})"
                                          if outcome == "tampered" else ""))

        sweep = verify_stored_blobs(older_than, progress=progress)
        summary = f"{sweep.checked} blobs verified: {len(sweep.tampered)} tampered, {len(sweep.missing)} missing"
        if not sweep.ok:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
