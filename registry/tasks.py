"""Periodic registry work: re-hash stored blobs so altered bytes are found before anyone downloads them.

`verify_stored_blobs` is the one loop; the Celery beat task and `manage.py verifyblobs` call it.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from controlplane.errors import NotFound
from registry.models import Blob
from registry.storage import BlobStore, default_store

log = logging.getLogger(__name__)


@dataclass
class BlobSweep:
    checked: int = 0
    tampered: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.tampered and not self.missing


def blobs_due(older_than_s: int, *, now: datetime):
    """Blobs never checked, or last checked `older_than_s` ago or more; tampered ones always (they may be restored)."""
    cutoff = now - timedelta(seconds=older_than_s)
    return (Blob.objects.filter(Q(verified_at__isnull=True) | Q(verified_at__lte=cutoff) | Q(tampered_at__isnull=False))
            .order_by("digest"))


def verify_stored_blobs(older_than_s: int = 0, *, clock: Callable[[], datetime] = timezone.now,
                        store: BlobStore | None = None,
                        progress: Callable[[int, int, Blob, str], None] | None = None) -> BlobSweep:
    """Re-hash every due blob and record each outcome on its row (tampered ones are then refused).

    `progress(position, total, blob, outcome)` is called after each blob, outcome one of
    "ok", "tampered", "missing".
    """
    store = store or default_store()
    due = blobs_due(older_than_s, now=clock())
    total = due.count()
    sweep = BlobSweep()
    for position, blob in enumerate(due.iterator(), start=1):
        try:
            intact = blob.verify(store, now=clock())
        except NotFound:
            # Missing bytes are not altered bytes: reported, not marked; downloads already answer 404.
            sweep.missing.append(blob.digest)
            outcome = "missing"
        else:
            outcome = "ok" if intact else "tampered"
            if not intact:
                sweep.tampered.append(blob.digest)
                log.error("stored blob sha256:%s now hashes to sha256:%s; marked tampered",
                          blob.digest, blob.tampered_digest)
        sweep.checked += 1
        if progress:
            progress(position, total, blob, outcome)
    return sweep


@shared_task(name="registry.tasks.verify_blobs")
def verify_blobs(older_than_s: int | None = None) -> dict:
    """Beat's periodic re-verification: blobs not checked within one interval are re-hashed."""
    if older_than_s is None:
        older_than_s = settings.MLCP_VERIFY_BLOBS_EVERY_S
    sweep = verify_stored_blobs(older_than_s)
    if sweep.missing:
        log.error("%d stored blobs are missing: %s", len(sweep.missing), ", ".join(sweep.missing))
    log.info("verified %d blobs: %d tampered, %d missing", sweep.checked, len(sweep.tampered), len(sweep.missing))
    return {"checked": sweep.checked, "tampered": sweep.tampered, "missing": sweep.missing}
