"""`manage.py verifyblobs`: remove unreferenced blobs past their grace, re-hash stored blobs now, mark altered
ones tampered, fail when any are."""

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat

from registry.tasks import verify_stored_blobs


class Command(BaseCommand):
    help = ("Remove blobs that nothing references and no upload claimed within MLCP_ORPHAN_BLOB_GRACE_S, then "
            "re-hash stored blobs and mark those whose bytes no longer match their digest as tampered "
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
        for digest in sweep.removed:
            self.stdout.write(f"sha256:{digest}: removed (unreferenced)")
        summary = (f"{sweep.checked} blobs verified: {len(sweep.tampered)} tampered, {len(sweep.missing)} missing; "
                   f"{len(sweep.removed)} unreferenced removed")
        if not sweep.ok:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
