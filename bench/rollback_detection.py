"""How fast mlcp's analysis catches a canary that starts failing, next to what
Argo Rollouts' and Flagger's documented defaults would give for the same onset.

Real parts: two `mlcp serve` processes (stable and canary, a trained ResNet,
signed with a throwaway key), a `prometheus` scraping them every second, a
traffic generator splitting by the canary weight held in a Kubernetes API
emulator (ReplicaRatioRouter, 9 stable pods : 1 canary pod), and
`rollouts.metrics.analyze` with the default AnalysisConfig run every second as
a controller tick would. At T0 the canary's fault switch starts failing a
share of its requests; detection is T0 to the first FAIL verdict, rollback
adds routing all traffic to stable in the emulator.

Run: .venv/bin/python bench/rollback_detection.py [--trials 3 --error-rate 0.1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe_machine  # noqa: E402
from devtools.embedded.kube import start_kube_emulator  # noqa: E402
from devtools.embedded.prometheus import prometheus_server  # noqa: E402
from devtools.reference_models import build_reference_model, golden_inputs_and_labels  # noqa: E402
from devtools.serve_process import ServeProcess  # noqa: E402
from devtools.traffic import CANARY, TrafficGenerator  # noqa: E402
from k8s import (  # noqa: E402
    CanarySpec,
    Cluster,
    DeploymentWorkloads,
    ReplicaRatioRouter,
    RetryPolicy,
)
from rollouts.analysis import AnalysisConfig, Verdict  # noqa: E402
from rollouts.metrics import PrometheusMetricsProvider, analyze  # noqa: E402
from tests.serving import keypair, signed_artifact  # noqa: E402

MODEL, STABLE_NAME, TOTAL_PODS = "resnet", "resnet-server", 10
SCRAPE_S = 1.0


@dataclass
class Trial:
    """One onset: verdicts before it, and the seconds from onset to each milestone."""

    version: str
    pre_onset_verdicts: dict[str, int]
    pre_onset_fail_reasons: list[str]
    detect_s: float | None = None
    routed_s: float | None = None
    reason: str = ""
    canary_requests: int = 0


def stable_deployment() -> dict:
    labels = {"app.kubernetes.io/name": STABLE_NAME, "mlcp.io/track": "stable"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": STABLE_NAME, "labels": {"app.kubernetes.io/name": STABLE_NAME,
                                                         "mlcp.io/model": MODEL, "mlcp.io/version": "1"}},
            "spec": {"replicas": TOTAL_PODS, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": {**labels, "mlcp.io/model": MODEL}},
                                  "spec": {"containers": [{"name": "server", "image": "mlcp/serve:dev"}]}}}}


def run_trial(args, index, stable, artifact, bundle, public, prometheus, provider, workloads, router,
              namespace, inputs) -> Trial:
    version = str(index + 2)
    canary = ServeProcess(artifact, bundle, [public], model=MODEL, version=version, track="canary",
                          extra_args=["--fault-seed", str(index)]).start()
    try:
        prometheus.scrape([stable.target, canary.target])
        workloads.ensure_canary(namespace, STABLE_NAME, CanarySpec(
            model=MODEL, version=version, uri=f"file://{artifact}", digest="sha256:" + "0" * 64,
            signature_uri=f"file://{bundle}", rollout_id=f"bench-{index}"), replicas=1)
        router.route(args.canary_percent)
        time.sleep(2 * SCRAPE_S)  # the canary's zeroed series scraped before its first request
        step_started = datetime.now(UTC)
        traffic = TrafficGenerator(
            stable.url, canary.url, lambda: router.observe().canary_percent / 100, inputs,
            rate_per_s=args.rate, max_requests=int(args.rate * (args.warmup_s + args.max_wait_s + 10)),
            max_seconds=args.warmup_s + args.max_wait_s + 10, workers=4, seed=index).start()
        trial = Trial(version, {}, [])
        config, step = AnalysisConfig(), timedelta(minutes=args.step_minutes)

        def tick():
            return analyze(provider, config, MODEL, version, "1", datetime.now(UTC), step,
                           step_started_at=step_started)

        # Warm-up: a healthy canary, judged every second; any FAIL here is a false alarm.
        for _ in range(int(args.warmup_s)):
            tick_at = time.monotonic()
            report = tick()
            trial.pre_onset_verdicts[report.verdict.value] = trial.pre_onset_verdicts.get(report.verdict.value, 0) + 1
            if report.verdict == Verdict.FAIL:
                trial.pre_onset_fail_reasons.append(report.reason)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick_at)))
        time.sleep(random.Random(index).random())  # the onset falls anywhere between two ticks
        onset = time.monotonic()  # taken before the switch: detection is never flattered
        canary.set_fault(error_rate=args.error_rate)
        while time.monotonic() - onset < args.max_wait_s:
            tick_at = time.monotonic()
            report = tick()
            if report.verdict == Verdict.FAIL:
                trial.detect_s, trial.reason = time.monotonic() - onset, report.reason
                router.route(0)  # all traffic to stable, canary scaled to zero
                trial.routed_s = time.monotonic() - onset
                break
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick_at)))
        trial.canary_requests = traffic.stop().count(CANARY)
        return trial
    finally:
        canary.stop()


# --- what Argo Rollouts and Flagger would do ------------------------------------------


def tool_estimates(error_rate: float, scrape_s: float) -> list[tuple[str, str]]:
    """(tool, best / mean / worst seconds from onset) from their documented defaults,
    with the onset at a uniformly random point between two of their ticks."""
    rows = []

    def window(tick_s: float, first_fail_after_s: float, more_ticks: int) -> str:
        best = first_fail_after_s + more_ticks * tick_s
        return (f"{best:.0f} / {best + tick_s / 2:.0f} / {best + tick_s:.0f} s")

    # Argo Rollouts: failureLimit defaults to 0 (fail when failed > failureLimit);
    # interval has no default (one measurement and done), so take the docs'
    # background-analysis example: interval 5m, success-rate >= 0.95 from
    # irate(...[5m]), failureLimit 3. irate() reads the last two samples, so the
    # ratio shows the onset one scrape after it.
    argo_visible = scrape_s if error_rate > 0.05 else None
    for limit, label in ((3, "docs example, failureLimit 3"), (0, "failureLimit default 0")):
        rows.append((f"Argo Rollouts (interval 5m, {label})",
                     window(300, argo_visible, limit) if argo_visible is not None
                     else "never: the error rate stays under the 5% the condition allows"))
    # Flagger: interval 1m, threshold 5, request-success-rate >= 99% over rate(...[1m]).
    # The 1-minute ratio crosses 1% once 0.01/error_rate of the window has failed;
    # a check failing at tick k makes FailedChecks 5 at tick k+4, and the rollback
    # runs at the start of tick k+5 (scheduler: threshold test before the checks).
    if error_rate > 0.01:
        crossing = 60 * 0.01 / error_rate + scrape_s
        rows.append(("Flagger (interval 1m, threshold 5): threshold reached", window(60, crossing, 4)))
        rows.append(("Flagger (interval 1m, threshold 5): traffic routed back", window(60, crossing, 5)))
    else:
        rows.append(("Flagger (interval 1m, threshold 5)", "never: the error rate stays under the 1% allowed"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--error-rate", type=float, default=0.1, help="share of canary requests failing after T0")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, both arms together")
    parser.add_argument("--canary-percent", type=int, default=10)
    parser.add_argument("--warmup-s", type=float, default=20.0, help="healthy canary traffic before the onset")
    parser.add_argument("--max-wait-s", type=float, default=20.0, help="give up on a trial after this long")
    parser.add_argument("--step-minutes", type=float, default=5.0)
    args = parser.parse_args()

    started = time.monotonic()
    reference = build_reference_model(MODEL)
    inputs, _ = golden_inputs_and_labels()
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="mlcp-bench-rollback-") as tmp:
        private, public = keypair(Path(tmp))
        artifact, bundle = signed_artifact(Path(tmp), reference.onnx_bytes, private)
        emulator = start_kube_emulator()
        cluster = Cluster(emulator.api_client(), request_timeout=(2.0, 5.0),
                          retry=RetryPolicy(attempts=5, base_delay_s=0.01, max_delay_s=0.05))
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        cluster.apps.create_namespaced_deployment(namespace, stable_deployment())
        workloads = DeploymentWorkloads(cluster)
        router = ReplicaRatioRouter(workloads, namespace, STABLE_NAME, total_replicas=TOTAL_PODS)
        try:
            with ServeProcess(artifact, bundle, [public], model=MODEL, version="1", track="stable") as stable, \
                    prometheus_server(scrape_interval_s=SCRAPE_S) as prometheus:
                provider = PrometheusMetricsProvider(prometheus.url)
                for index in range(args.trials):
                    trials.append(run_trial(args, index, stable, artifact, bundle, public, prometheus, provider,
                                            workloads, router, namespace, inputs))
        finally:
            cluster.close()
            emulator.stop()

    print(f"machine: {describe_machine()}")
    print(f"setup: ResNet (digits) on 2 `mlcp serve` processes, {args.rate:.0f} req/s split "
          f"{100 - args.canary_percent}/{args.canary_percent} by replica ratio in the Kubernetes emulator, "
          f"Prometheus scraping every {SCRAPE_S:.0f} s, analyze() with AnalysisConfig() defaults and a "
          f"{args.step_minutes:g}-min step every 1 s; canary error rate 0 -> {args.error_rate:.0%} at T0")
    for n, trial in enumerate(trials, 1):
        detected = f"{trial.detect_s:.1f} s" if trial.detect_s is not None else f"not within {args.max_wait_s:.0f} s"
        routed = f"{trial.routed_s:.2f} s" if trial.routed_s is not None else "-"
        print(f"trial {n} (canary v{trial.version}, {trial.canary_requests} canary requests): "
              f"pre-onset verdicts {trial.pre_onset_verdicts}; FAIL after {detected}; "
              f"all traffic on stable in the emulator after {routed}")
        for reason in trial.pre_onset_fail_reasons[:3]:
            print(f"    false alarm before onset: {reason}")
        if trial.reason:
            print(f"    verdict: {trial.reason}")
    detected = [t.detect_s for t in trials if t.detect_s is not None]
    routed = [t.routed_s for t in trials if t.routed_s is not None]
    if detected:
        print(f"mlcp: detection median {statistics.median(detected):.1f} s (min {min(detected):.1f}, max "
              f"{max(detected):.1f}); rollback routed median {statistics.median(routed):.2f} s after onset")
    print("for the same onset, computed from documented defaults (best / mean / worst over the onset's phase):")
    for tool, figure in tool_estimates(args.error_rate, SCRAPE_S):
        print(f"  {tool}: {figure}")
    print("assumptions: Argo interval and query from the docs' background-analysis example (interval has no "
          "default), failureLimit semantics 'failed > failureLimit', consecutiveErrorLimit (default 4) counts "
          "query errors only and plays no part; Flagger analysis.interval 1m, threshold 5, builtin "
          "request-success-rate min 99 over a 1m window; both query the canary's own traffic, scraped every "
          f"{SCRAPE_S:.0f} s like here, and act on a failed run at once.")
    print(f"bench wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
