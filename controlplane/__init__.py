"""mlcp's Django project: settings, URLs, the Celery app, roles, accounts and tokens.

The Celery app is not imported here: `ControlPlaneConfig.ready()` loads it in
every Django process, and workers name it (`celery -A controlplane.celery`).
"""
