"""`manage.py alertrules`: the Prometheus rules mlcp ships, for a Prometheus of one's own.

Printed with this installation's URLs (MLCP_PUBLIC_URL, --runbook-url) and
each registered model's own availability objective; `--write DIR` writes
the generic files (and their ConfigMap) that k8s/manifests/base/alerts/ ships instead.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from oncall import rules
from registry.models import RegisteredModel


class Command(BaseCommand):
    help = "Print mlcp's Prometheus alerting rules (model SLO burn, mlcp's own health)."

    def add_arguments(self, parser):
        parser.add_argument("--runbook-url", default="", help="where docs/runbook.md is published "
                            "(default: MLCP_PUBLIC_URL/docs/runbook.md)")
        parser.add_argument("--only", choices=sorted(rules.FILES), help="one of the two rule files")
        parser.add_argument("--write", metavar="DIR", help="write the generic files (placeholder URLs, default "
                            "objective) into DIR, as k8s/manifests/base/alerts/ ships them")

    def handle(self, runbook_url, only, write, **options):
        if write:
            for name, text in rules.shipped_files().items():
                (Path(write) / name).write_text(text)
                self.stdout.write(f"wrote {Path(write) / name}")
            return
        public = settings.MLCP_PUBLIC_URL.rstrip("/")
        links = rules.Links(runbook_url=runbook_url or f"{public}/docs/runbook.md", public_url=public)
        objectives = {model.name: float(model.slo["availability"]) for model in RegisteredModel.objects.all()
                      if _own_objective(model.slo)}
        parts = {"model-slo.rules.yaml": rules.model_slo_rules(links=links, objectives=objectives),
                 "mlcp.rules.yaml": rules.mlcp_rules(links=links)}
        if only:
            self.stdout.write(rules.to_yaml(parts[only]), ending="")
            return
        # One file Prometheus can load: both files' groups together.
        merged = {"groups": [group for part in parts.values() for group in part["groups"]]}
        self.stdout.write(rules.to_yaml(merged), ending="")


def _own_objective(slo) -> bool:
    availability = slo.get("availability") if isinstance(slo, dict) else None
    return (isinstance(availability, (int, float)) and not isinstance(availability, bool)
            and 0 < availability < 1 and availability != rules.DEFAULT_OBJECTIVE)
