from django.apps import AppConfig


class ControlPlaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "mlcp control plane"

    def ready(self):
        from controlplane import checks  # noqa: F401  (registers the deploy checks)
