"""The Celery app: gates run on the `gates` queue, configured from Django settings."""

import logging
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("mlcp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_routes={"workers.tasks.*": {"queue": "gates"}},
    task_default_queue="default",
    broker_connection_retry_on_startup=True,
)
if not app.conf.broker_url.startswith("filesystem"):
    # How soon a gate whose worker died unacknowledged is handed to another worker.
    app.conf.broker_transport_options = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))}
app.autodiscover_tasks(["workers", "registry"])


@app.on_after_finalize.connect
def _schedule_blob_verification(sender, **_) -> None:
    # Run by `celery -A controlplane beat`; on the gates queue because its workers already read the artifact store.
    from django.conf import settings

    sender.add_periodic_task(float(settings.MLCP_VERIFY_BLOBS_EVERY_S), sender.signature("registry.tasks.verify_blobs"),
                             name="verify-blobs", queue="gates")


@signals.worker_init.connect
def _refuse_to_gate_without_a_sandbox(**_) -> None:
    # A worker that would run uploads with access to its own keys must not start. SystemExit,
    # because Celery logs and swallows ordinary exceptions from signal handlers.
    from django.core.exceptions import ImproperlyConfigured

    from workers.sandbox.isolation import require_isolation

    try:
        isolation = require_isolation()
    except ImproperlyConfigured as exc:
        log.critical("refusing to start: %s", exc)
        raise SystemExit(f"mlcp worker: {exc}") from None
    log.info("gates run in the '%s' sandbox", isolation.name)
    from workers.sandbox.runner import sweep_stale_jobs

    if swept := sweep_stale_jobs():
        log.warning("removed %d gate job directories left by a worker that died", swept)

log = logging.getLogger(__name__)


def queue_gates(version_id: int) -> None:
    """Queue a version's gate pipeline by task name, so the web process never imports torch.

    A broker outage must not fail the registration itself: the version stays
    `registered` and `manage.py queuegates` queues it later.
    """
    try:
        app.send_task("workers.tasks.start_pipeline", args=[version_id], retry=True,
                      retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})
    except Exception as exc:  # kombu raises several unrelated types for "broker unreachable"
        log.error("gates for version %s were not queued (%s: %s); it stays 'registered' until "
                  "`manage.py queuegates` is run", version_id, type(exc).__name__, exc)
