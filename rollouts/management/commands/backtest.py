"""`manage.py backtest MODEL --from T1 --to T2 [--steps 10,25,50] [--interval S]`: what the
controller would have done on recorded Prometheus history.

Walks the controller's own `plan()` at its interval, each tick's analysis the
controller's own; prints per tick the step, each check's verdict and the
decision, and at the end when it would have promoted or rolled back.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from controlplane.errors import MlcpError
from registry import services as registry
from rollouts import services
from rollouts.instants import parse_instant

SHORT = {"burn_rate": "burn", "canary_vs_stable_errors": "errors", "latency_p95": "latency",
         "traffic_split": "split", "class_mix": "classes"}


class Command(BaseCommand):
    help = "Backtest MODEL's rollout on recorded history: the controller's decisions tick by tick."

    def add_arguments(self, parser):
        parser.add_argument("model")
        parser.add_argument("--from", required=True, dest="start", help="ISO 8601 instant the first step starts")
        parser.add_argument("--to", required=True, dest="until", help="ISO 8601 instant to stop at")
        parser.add_argument("--steps", help="comma-separated weights, e.g. 10,25,50 (pause as --pause); "
                                            "default: the latest rollout's steps")
        parser.add_argument("--pause", type=int, default=300, help="seconds per step with --steps (default 300)")
        parser.add_argument("--interval", type=float, default=10.0,
                            help="seconds between ticks (default 10, runcontroller's)")
        parser.add_argument("--canary-version", type=int)
        parser.add_argument("--stable-version", type=int)
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, model, start, until, steps, pause, interval, canary_version, stable_version, as_json,
               **options):
        try:
            parsed = None
            if steps:
                parsed = [{"weight": int(w), "pause_s": pause} for w in steps.split(",") if w.strip()]
            result = services.backtest(registry.get_model(model), parse_instant(start), parse_instant(until),
                                       steps=parsed, interval_s=interval, canary_version=canary_version,
                                       stable_version=stable_version)
        except ValueError as exc:
            raise CommandError(f"--steps takes whole percents separated by commas: {exc}") from exc
        except MlcpError as exc:
            raise CommandError(f"{exc.detail} ({exc.code})") from exc
        if as_json:
            self.stdout.write(json.dumps(result.to_json(), indent=2))
            return
        self.stdout.write(f"{model} canary {result.canary_version} vs stable {result.stable_version}, steps "
                          f"{[s.weight for s in result.steps]}, {len(result.ticks)} ticks")
        for tick in result.ticks:
            checks = " ".join(f"{SHORT.get(name, name)}={verdict}" for name, verdict in tick.checks.items())
            share = "" if tick.observed_share is None else f" share {tick.observed_share:.1%}/{tick.intended_share:.1%}"
            self.stdout.write(f"  {tick.at:%Y-%m-%dT%H:%M:%SZ} step {tick.step} ({tick.weight}%){share}  "
                              f"{(tick.verdict or '-'):<12} {checks}  -> {tick.do}")
        if result.decided_at is None:
            self.stdout.write(f"undecided by {until}: the rollout would still be running")
        else:
            self.stdout.write(f"would have {result.outcome.replace('_', ' ')} at "
                              f"{result.decided_at:%Y-%m-%dT%H:%M:%SZ}: {result.reason}")
