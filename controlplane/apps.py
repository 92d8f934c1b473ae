from django.apps import AppConfig


class ControlPlaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "mlcp control plane"

    def ready(self):
        from controlplane import checks  # noqa: F401  (registers the deploy checks)
        from registry import pipeline
        from controlplane.celery import queue_gates

        # The registry knows nothing of the workers: new versions are handed to them here.
        pipeline.on_version_registered(queue_gates)
