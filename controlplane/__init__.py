"""mlcp's Django project: settings, URLs, the Celery app, roles and the CLI."""
from controlplane.celery import app as celery_app  # noqa: F401  (loaded with Django)
