"""Celery tasks: thin wrappers that pass IDs and call `workers.pipeline`.

Gates run on the `gates` queue (GPU workers listen there). Infrastructure
faults (database, broker) are retried with backoff; a gate's own failure is
a verdict and is never retried.
"""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from workers import pipeline
from workers.pipeline import TRANSIENT

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, soft_time_limit=900, time_limit=960,
             autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=60, retry_jitter=True, max_retries=5)
def run_gate(self, version_id: int, gate: str) -> str | None:
    try:
        result = pipeline.run_gate(version_id, gate)
    except SoftTimeLimitExceeded:
        result = pipeline.record_time_limit(version_id, gate)
    if result is None:
        return None
    upcoming = pipeline.conclude(version_id)
    if upcoming:
        run_gate.delay(version_id, upcoming)
    return result.verdict


@shared_task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=2, max_retries=5)
def start_pipeline(version_id: int) -> None:
    from registry.models import ModelVersion

    version = ModelVersion.objects.select_related("model").filter(pk=version_id).first()
    if version is None:
        log.warning("version %s is gone; no gates started", version_id)
        return
    pipeline.start_pipeline(version)
    upcoming = pipeline.next_gate(version)
    if upcoming:
        run_gate.delay(version_id, upcoming)
