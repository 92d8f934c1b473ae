"""The Celery app: gates run on the `gates` queue, configured from Django settings."""

import os

from celery import Celery

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
app.autodiscover_tasks(["workers"])
