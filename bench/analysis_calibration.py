"""Calibration of the canary analysis, measured: how often it rolls back a
canary identical to stable (A/A), per check and overall, against alpha; and
how long it takes to catch a canary that is worse, next to the SRE Workbook's
page and Flagger's defaults on the same series.

Generated traffic, the real analysis: each rollout's requests, errors,
latency buckets and predicted classes are drawn per scrape (every 15 s) as
cumulative counters, served through `PrometheusMetricsProvider`'s own
counting code (only the HTTP call is replaced by the generated samples), and
judged by `rollouts.metrics.analyze_tick` and the controller's `plan()` at
the controller's cadence (a tick every 10 s), exactly as a controller tick
or `manage.py backtest` would. A/A rollouts walk steps 10% -> 25% -> 50% of a
10-pod replica ratio (10%, 30%, 50% of traffic), 300 s each, with every
check on; per check, a rollout counts as falsely failed by it if that check
ever says FAIL on any tick of the rollout.

Run: .venv/bin/python bench/analysis_calibration.py [--rollouts 200 --trials 40]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import os  # noqa: E402

import django  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
django.setup()

from bench.machine import describe_machine  # noqa: E402
from k8s import RouterTarget, build_router  # noqa: E402
from rollouts.analysis import ALL_CHECKS, AnalysisConfig, Verdict  # noqa: E402
from rollouts.choices import Phase  # noqa: E402
from rollouts.controller import AnalysisOutcome, Do, Observed, RolloutState, plan  # noqa: E402
from rollouts.metrics import PrometheusMetricsProvider, analysed_steps_of, analyze_tick  # noqa: E402
from rollouts.strategy import AnalysisSettings, parse_steps  # noqa: E402
from serving.metrics import LATENCY_BUCKETS_S  # noqa: E402

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SCRAPE_S, TICK_S = 15.0, 10.0
TRAFFIC = RouterTarget.from_json({"namespace": "bench", "deployment": "model", "replicas": 10})
N_CLASSES = 10
# Stable's error rate: half the 99.9% SLO's budget (burn 0.5), a healthy service. At exactly burn 1 the
# burn-rate check (a threshold on windows compressed to seconds, not a test) fails 17% of A/A rollouts.
BASE_ERROR_RATE = 0.0005
RATE_PER_S = 100.0


@dataclass(frozen=True)
class Arm:
    """How one arm behaves: error rate, latency scale (x stable's), and a class it never predicts."""

    error_rate: float = BASE_ERROR_RATE
    latency_scale: float = 1.0
    never_class: int | None = None


def _bucket_probabilities(scale: float) -> np.ndarray:
    # Log-normal latencies, median 20 ms x scale, sigma 0.5: a millisecond-scale model's histogram.
    edges = np.array(LATENCY_BUCKETS_S)
    z = (np.log(edges / (0.02 * scale))) / 0.5
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))  # one per bucket, +Inf last


CLASS_MIX = np.array([0.16, 0.12, 0.11, 0.1, 0.1, 0.1, 0.09, 0.08, 0.08, 0.06])


class GeneratedTraffic:
    """Cumulative counters of both arms at every scrape, drawn as time advances."""

    def __init__(self, rng, canary: Arm, stable: Arm = Arm()):
        self.rng, self.arms = rng, {"canary": canary, "stable": stable}
        self.scrapes: list[float] = [0.0]
        keys = [("code", "200"), ("code", "500")] + [("le", repr(le)) for le in LATENCY_BUCKETS_S] + \
            [("le", "+Inf")] + [("class", str(k)) for k in range(N_CLASSES)]
        self.keys = [frozenset({k}) for k in keys]
        self.values = {track: [np.zeros(len(keys))] for track in self.arms}
        self.bucket_p = {t: _bucket_probabilities(a.latency_scale) for t, a in self.arms.items()}
        self.class_p = {}
        for track, arm in self.arms.items():
            p = CLASS_MIX.copy()
            if arm.never_class is not None:  # its share goes to the runner-up class, as OnnxModel.predict does
                p[(arm.never_class + 1) % N_CLASSES] += p[arm.never_class]
                p[arm.never_class] = 0.0
            self.class_p[track] = p

    def advance(self, until_s: float, canary_share: float) -> None:
        while self.scrapes[-1] + SCRAPE_S <= until_s:
            n = self.rng.poisson(RATE_PER_S * SCRAPE_S)
            n_canary = self.rng.binomial(n, canary_share)
            for track, served in (("canary", n_canary), ("stable", n - n_canary)):
                arm = self.arms[track]
                errors = self.rng.binomial(served, arm.error_rate)
                per_bucket = self.rng.multinomial(served, self.bucket_p[track])
                classes = self.rng.multinomial(served - errors, self.class_p[track])
                step = np.concatenate([[served - errors, errors], np.cumsum(per_bucket), classes])
                self.values[track].append(self.values[track][-1] + step)
            self.scrapes.append(self.scrapes[-1] + SCRAPE_S)

    def at(self, track: str, seconds: float) -> dict:
        index = int(np.searchsorted(self.scrapes, seconds, side="right")) - 1
        if index < 0:
            return {}
        return dict(zip(self.keys, self.values[track][index].tolist()))


class GeneratedProvider(PrometheusMetricsProvider):
    """The Prometheus provider's own counting, reading generated samples instead of HTTP answers."""

    def __init__(self, traffic: GeneratedTraffic):
        super().__init__("http://generated.invalid")
        self.traffic = traffic

    def _values(self, name, query, at, records) -> dict:
        track = name.split(".", 1)[0]
        return self.traffic.at(track, (at - T0).total_seconds())


@dataclass
class RolloutRun:
    outcome: str = "undecided"
    rolled_back: bool = False  # the plan said ROLL_BACK on some tick
    failed_by: set = field(default_factory=set)  # checks that said FAIL (split: INVALID) on some tick
    detected_s: float | None = None


def run_rollout(rng, canary: Arm, settings: AnalysisSettings, steps, horizon_s: float,
                stop_on_fail: bool = True, watch: str | None = None) -> RolloutRun:
    """Tick the controller's plan() over generated traffic until it decides or `horizon_s` passes."""
    traffic = GeneratedTraffic(rng, canary)
    provider = GeneratedProvider(traffic)
    router = build_router(TRAFFIC, None)
    state = RolloutState(id=0, phase=Phase.PROGRESSING, current_step=0, steps=steps, traffic=TRAFFIC,
                         canary_version="2", stable_version="1", step_started_at=T0,
                         deadline_at=T0 + settings.step_deadline(steps[0]))
    run, t = RolloutRun(), TICK_S
    while t <= horizon_s:
        step = state.step
        share = router.expected(step.weight)
        traffic.advance(t, share.canary_weight / (share.canary_weight + share.stable_weight))
        now = T0 + timedelta(seconds=t)
        report = analyze_tick(provider, settings.config, "bench", "2", "1", step=step, traffic=TRAFFIC,
                              step_started_at=state.step_started_at, now=now,
                              analysed_steps=analysed_steps_of(steps))
        for check in report.checks:
            if check.verdict in (Verdict.FAIL, Verdict.INVALID):  # invalid: the split guard's false alarm
                run.failed_by.add(check.check)
                if check.check == watch and run.detected_s is None:
                    run.detected_s = t
        if watch is not None and run.detected_s is not None:
            return run
        action = plan(state, Observed(now, route=share, canary_version="2", canary_ready=True,
                                      analysis=AnalysisOutcome(report.verdict, report.reason, {})))
        if action.do == Do.ROLL_BACK:
            run.rolled_back = True
            if stop_on_fail:
                run.outcome = "rolled_back"
                return run
        elif action.do in (Do.ABORT, Do.BEGIN_PROMOTION):
            run.outcome = {Do.ABORT: "aborted", Do.BEGIN_PROMOTION: "promoted"}[action.do]
            return run
        if action.do == Do.NEXT_STEP:
            state = replace(state, current_step=action.to_step, step_started_at=now,
                            deadline_at=now + settings.step_deadline(steps[action.to_step]))
        t += TICK_S
    return run


def workbook_page_s(error_rate: float, slo: float = 0.999) -> str:
    # The 1h/5m pair pages above burn 14.4, the 6h/30m pair above 6, on the canary's own series.
    burn = error_rate / (1 - slo)
    if burn > 14.4:
        return f"burn {burn:.1f}: pages after ~{3600 * 14.4 / burn / 60:.0f} min (1h window reaches 14.4)"
    if burn > 6:
        return f"burn {burn:.1f}: pages after ~{6 * 3600 * 6 / burn / 60:.0f} min (6h window reaches 6)"
    return f"burn {burn:.1f}: never pages (below 6)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=200, help="A/A rollouts (at least 100)")
    parser.add_argument("--trials", type=int, default=40, help="rollouts per detection scenario")
    parser.add_argument("--horizon", type=float, default=1800.0, help="seconds a detection trial may take")
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    config = AnalysisConfig(checks=ALL_CHECKS)
    settings = AnalysisSettings(config)
    steps = parse_steps([{"weight": w, "pause_s": 300} for w in (10, 25, 50)])
    print(describe_machine())
    per_test = config.alpha_per_test / analysed_steps_of(steps)
    print(f"analysis: alpha {config.alpha} per rollout, {per_test:.4f} per sequential test and step; "
          f"min_requests {config.min_requests}; {RATE_PER_S:.0f} rps; scrape {SCRAPE_S:.0f} s; tick {TICK_S:.0f} s")

    started = time.monotonic()
    runs = [run_rollout(rng, Arm(), settings, steps, horizon_s=3600.0, stop_on_fail=False)
            for _ in range(args.rollouts)]
    print(f"\nA/A: {args.rollouts} rollouts (canary identical to stable, {BASE_ERROR_RATE:.2%} errors: burn "
          f"{BASE_ERROR_RATE / (1 - config.slo_target):.1f}), steps 10/25/50% x 300 s "
          f"({time.monotonic() - started:.0f} s)")
    print(f"  {'check':<26} {'false FAIL rate':>16}   bound   (traffic_split: false INVALID, which holds)")
    for check in ALL_CHECKS:
        rate = sum(check in r.failed_by for r in runs) / len(runs)
        bound = config.alpha if check == "traffic_split" else (
            config.alpha_per_test if check != "burn_rate" else "n/a (threshold)")  # per test, over its 3 steps
        print(f"  {check:<26} {rate:>16.3f}   {bound if isinstance(bound, str) else f'<= {bound:.4f}'}")
    rolled_back = sum(r.rolled_back for r in runs) / len(runs)
    outcomes = {o: sum(r.outcome == o for r in runs) for o in ("promoted", "rolled_back", "aborted", "undecided")}
    print(f"  {'overall false rollbacks':<26} {rolled_back:>16.3f}   <= {config.alpha}")
    print(f"  outcomes: {outcomes}")

    print(f"\ndetection at 10% canary traffic ({args.trials} trials each, horizon {args.horizon:.0f} s):")
    scenarios = [
        ("errors x2", Arm(error_rate=2 * BASE_ERROR_RATE), "canary_vs_stable_errors"),
        ("errors x5", Arm(error_rate=5 * BASE_ERROR_RATE), "canary_vs_stable_errors"),
        ("latency +20%", Arm(latency_scale=1.2), "latency_p95"),
        ("latency +100%", Arm(latency_scale=2.0), "latency_p95"),
        ("one class dropped", Arm(never_class=3), "class_mix"),
    ]
    # The same three-step plan (so the same alpha per test), held in its 10% step for the whole horizon.
    long_step = parse_steps([{"weight": 10, "pause_s": int(args.horizon) * 10}, 25, 50])
    hold = AnalysisSettings(config, hold_budget_s=int(args.horizon) * 10)
    for name, arm, check in scenarios:
        delays = [run_rollout(rng, arm, hold, long_step, args.horizon, watch=check, stop_on_fail=False).detected_s
                  for _ in range(args.trials)]
        seen = sorted(d for d in delays if d is not None)
        if seen:
            q = np.percentile(seen, [50, 90]) if len(seen) > 1 else [seen[0], seen[0]]
            said = f"median {q[0]:.0f} s, p90 {q[1]:.0f} s, max {seen[-1]:.0f} s"
        else:
            said = "never"
        missed = len(delays) - len(seen)
        if "errors" in name:
            others = f"Workbook page: {workbook_page_s(arm.error_rate)}; Flagger (success rate < 99% " \
                     f"for 5 x 1 min): never ({100 * (1 - arm.error_rate):.2f}% success)"
        elif "latency" in name:
            others = "Workbook page: none (availability only); Flagger (p99 > 500 ms for 5 x 1 min): never " \
                     f"(p99 ~ {20 * arm.latency_scale * math.exp(2.326 * 0.5):.0f} ms)"
        else:
            others = "Workbook page and Flagger: no such signal (errors and latency unchanged)"
        print(f"  {name:<18} {check:<24} {said}; missed {missed}/{len(delays)}")
        print(f"  {'':<18} {others}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
