"""Periodic registry work: re-hash stored blobs so altered bytes are found before anyone downloads them,
and remove blobs that failed uploads left unreferenced.

`verify_stored_blobs` is the one loop; the Celery beat task and `manage.py verifyblobs` call it.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef, ProtectedError, Q
from django.utils import timezone

from controlplane.errors import MlcpError, NotFound
from registry.models import Blob, GoldenSet, ModelVersion
from registry.storage import BlobStore, default_store

log = logging.getLogger(__name__)


@dataclass
class BlobSweep:
    checked: int = 0
    tampered: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # unreferenced, past MLCP_ORPHAN_BLOB_GRACE_S

    @property
    def ok(self) -> bool:
        return not self.tampered and not self.missing


def _referenced():
    return Q(Exists(ModelVersion.objects.filter(blob=OuterRef("pk")))) | Q(
        Exists(GoldenSet.objects.filter(blob=OuterRef("pk"))))


def blobs_due(older_than_s: int, *, now: datetime):
    """Referenced blobs never checked, or last checked `older_than_s` ago or more; tampered ones always (they may
    be restored). An unreferenced blob is nobody's artifact: its bytes may never have been committed."""
    cutoff = now - timedelta(seconds=older_than_s)
    return (Blob.objects.filter(Q(verified_at__isnull=True) | Q(verified_at__lte=cutoff) | Q(tampered_at__isnull=False))
            .filter(_referenced()).order_by("digest"))


def unreferenced_blobs(grace_s: int, *, now: datetime):
    """Blobs that no version or golden set references and no upload claimed in the last `grace_s` seconds."""
    return Blob.objects.filter(claimed_at__lt=now - timedelta(seconds=grace_s)).exclude(_referenced())


def remove_unreferenced_blobs(grace_s: int | None = None, *, clock: Callable[[], datetime] = timezone.now,
                              store: BlobStore | None = None) -> list[str]:
    """Remove the rows and bytes of `unreferenced_blobs` (grace MLCP_ORPHAN_BLOB_GRACE_S); returns their digests.

    A failed upload leaves its committed bytes to this sweep (`registry.services.claim_blob` says why).
    Each blob is selected again under its row's lock, and its row deleted before its bytes in one
    transaction: an upload claiming it meanwhile waits, then finds no row and stores the bytes again.
    A blob whose bytes cannot be deleted keeps its row, for the next sweep.
    """
    store = store or default_store()
    grace_s = settings.MLCP_ORPHAN_BLOB_GRACE_S if grace_s is None else grace_s
    removed = []
    for digest in list(unreferenced_blobs(grace_s, now=clock()).values_list("digest", flat=True)):
        try:
            with transaction.atomic():
                blob = unreferenced_blobs(grace_s, now=clock()).select_for_update().filter(pk=digest).first()
                if blob is None:
                    continue  # claimed or referenced since the list was read
                blob.delete()  # ProtectedError if a version or golden set refers to it after all
                store.delete(digest)
        except (ProtectedError, MlcpError, DatabaseError) as exc:
            log.warning("unreferenced blob sha256:%s was not removed: %s", digest, exc)
            continue
        removed.append(digest)
    if removed:
        log.info("removed %d unreferenced blobs: %s", len(removed), ", ".join(removed))
    return removed


def verify_stored_blobs(older_than_s: int = 0, *, clock: Callable[[], datetime] = timezone.now,
                        store: BlobStore | None = None,
                        progress: Callable[[int, int, Blob, str], None] | None = None) -> BlobSweep:
    """Remove unreferenced blobs past their grace, then re-hash every due blob and record each outcome on
    its row (tampered ones are then refused).

    `progress(position, total, blob, outcome)` is called after each blob, outcome one of
    "ok", "tampered", "missing".
    """
    store = store or default_store()
    sweep = BlobSweep(removed=remove_unreferenced_blobs(clock=clock, store=store))
    due = blobs_due(older_than_s, now=clock())
    total = due.count()
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
    log.info("verified %d blobs: %d tampered, %d missing; removed %d unreferenced", sweep.checked,
             len(sweep.tampered), len(sweep.missing), len(sweep.removed))
    return {"checked": sweep.checked, "tampered": sweep.tampered, "missing": sweep.missing, "removed": sweep.removed}
