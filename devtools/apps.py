from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """Only here so that `manage.py demo` is found; no models."""

    name = "devtools"
    verbose_name = "mlcp development tools"
