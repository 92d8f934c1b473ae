"""`manage.py analyze MODEL --at TIME`: replay a rollout's checks at a past instant.

Prints every check's verdict and reason and every PromQL query with its value,
so a rollback (or a promotion) can be explained after the fact.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from controlplane.errors import MlcpError
from registry import services as registry
from rollouts import services
from rollouts.instants import parse_instant


class Command(BaseCommand):
    help = "Replay the rollout analysis of MODEL at a past instant (queries, values, verdicts)."

    def add_arguments(self, parser):
        parser.add_argument("model")
        parser.add_argument("--at", required=True, help="ISO 8601 instant, e.g. 2024-03-01T12:30:00Z")
        parser.add_argument("--canary-version", type=int)
        parser.add_argument("--stable-version", type=int)
        parser.add_argument("--step-duration", type=int,
                            help="seconds over the whole window (default: the controller's own analysis of "
                                 "the step running at --at, or 600 outside a rollout)")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, model, at, canary_version, stable_version, step_duration, as_json, **options):
        try:
            report = services.replay_analysis(registry.get_model(model), parse_instant(at),
                                              canary_version=canary_version, stable_version=stable_version,
                                              step_duration_s=step_duration)
        except MlcpError as exc:
            raise CommandError(f"{exc.detail} ({exc.code})") from exc
        evidence = report.evidence()
        if as_json:
            self.stdout.write(json.dumps(evidence, indent=2))
            return
        self.stdout.write(f"{model} canary {report.canary_version} vs stable {report.stable_version} at "
                          f"{report.at.isoformat()}: {report.verdict.value.upper()} ({report.reason})")
        for check in evidence["checks"]:
            self.stdout.write(f"  {check['check']:<24} {check['verdict']:<12} {check['reason']}")
        self.stdout.write("counts (from raw counter values at each window's ends):")
        for arm in (report.observation.canary, report.observation.stable):
            for window_s, counts in sorted(arm.counts.items()):
                said = "no data" if counts is None else f"{counts.total:.0f} requests, {counts.errors:.0f} errors"
                self.stdout.write(f"  {arm.track}.requests.{window_s:.0f}s  {said}")
        self.stdout.write("queries:")
        for query in evidence["queries"]:
            value = "no data" if query["value"] is None else f"{query['value']:.6g}"
            self.stdout.write(f"  {query['name']:<26} {value:>12}  {query['query']}")

