"""mlcp's Django project: settings, URLs, the Celery app, roles and the CLI."""
