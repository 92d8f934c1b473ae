"""`manage.py queuegates`: queue the gates of every version still `registered` (after a broker outage)."""

from django.core.management.base import BaseCommand

from registry.choices import VersionStatus
from registry.models import ModelVersion
from controlplane.celery import queue_gates


class Command(BaseCommand):
    help = "Queue the gate pipeline for versions that are registered but not gating."

    def add_arguments(self, parser):
        parser.add_argument("--model", help="only this model")

    def handle(self, model=None, **options):
        versions = ModelVersion.objects.filter(status=VersionStatus.REGISTERED)
        if model:
            versions = versions.filter(model__name=model)
        for version in versions:
            queue_gates(version.pk)
            self.stdout.write(f"queued gates for {version}")
