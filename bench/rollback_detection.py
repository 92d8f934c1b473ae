"""How fast the rollout controller rolls back a canary that starts failing, next to what
Argo Rollouts' and Flagger's documented defaults would give for the same onset.

Real parts, on loopback: a throwaway control plane (SQLite database, registry,
signing key), the Kubernetes API emulator, one `prometheus` scraping every
--scrape-s, the stable version served by one `mlcp serve` for the whole run and
each trial's canary version by its own (its metrics carry its version), a
traffic generator sending --rate req/s split by the replica ratio read back
from the emulator (as a Service spreads requests over pods), and
`rollouts.controller.Controller` ticking every --tick-s under the controller
lease, in a loop shaped like `manage.py runcontroller`'s. A first rollout makes
version 1 production. Each trial then starts a rollout of a new version through
`rollouts.services.start_rollout` with the default strategy and analysis (first
step 10%, 300 s); once the controller analyses the canary, it stays healthy for
--warmup-s, then at T0 (a random instant between two ticks) its fault switch
fails --error-rate of its requests.

From T0: detection is when the controller recorded the rollout's first failing
analysis; "all traffic on stable" is the emulator's write that left the canary
Deployment at 0 replicas and the stable one at all of them (the emulator stamps
each write as it applies it), beside when the traffic generator first read that
split, and counted from the failed canary answer the failing verdict needed
last (the part that is the controller's, not the statistics'). The goal: p95
of "all traffic on stable" at most two scrape intervals plus one tick.

Run: .venv/bin/python bench/rollback_detection.py [--trials 20 --error-rate 0.1]
"""

from __future__ import annotations

import argparse
import atexit
import collections
import logging
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _throwaway_signing_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


# A control plane of its own: a throwaway data directory (SQLite, artifacts, signing key), never the developer's.
DATA_DIR = Path(tempfile.mkdtemp(prefix="mlcp-bench-rollback-"))
atexit.register(shutil.rmtree, DATA_DIR, ignore_errors=True)
os.environ["MLCP_DATA_DIR"] = str(DATA_DIR)
os.environ["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
os.environ.pop("DATABASE_URL", None)
# No gate worker here (versions are approved by hand): an in-memory broker, not a Redis that may be absent.
os.environ["CELERY_BROKER_URL"] = "memory://localhost/"
os.environ["LOG_LEVEL"] = "WARNING"  # the emulator logs every API request at INFO
os.environ["MLCP_SIGNING_KEY"] = _throwaway_signing_key()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from scipy.stats import gamma  # noqa: E402

from bench.machine import describe_machine  # noqa: E402
from devtools.embedded.kube import start_kube_emulator  # noqa: E402
from devtools.embedded.prometheus import prometheus_server  # noqa: E402
from devtools.live_rollout import EmulatorSplit, replicas, serve_version, stable_deployment  # noqa: E402
from devtools.reference_models import build_reference_model, golden_inputs_and_labels  # noqa: E402
from devtools.serve_process import ServeProcess  # noqa: E402
from devtools.traffic import CANARY, TrafficGenerator  # noqa: E402
from k8s import Cluster, RetryPolicy  # noqa: E402
from k8s.canary import canary_name  # noqa: E402
from registry import services as registry  # noqa: E402
from registry.models import RegisteredModel  # noqa: E402
from rollouts import services  # noqa: E402
from rollouts.choices import ACTIVE, Phase  # noqa: E402
from rollouts.circuit import MetricsCircuit  # noqa: E402
from rollouts.controller import Controller  # noqa: E402
from rollouts.lease import LeaseKeeper, LeaseLost  # noqa: E402
from rollouts.metrics import PrometheusMetricsProvider  # noqa: E402
from rollouts.models import AnalysisRun, AnalysisStepSummary, Rollout  # noqa: E402
from rollouts.strategy import DEFAULT_PAUSE_S, DEFAULT_WEIGHTS  # noqa: E402

MODEL, DEPLOYMENT, NAMESPACE, PODS = "digits", "digits-server", f"bench-{uuid.uuid4().hex[:8]}", 10
# Trials use the default strategy: the onset always lands in its first step.
FIRST_STEP_SHARE = DEFAULT_WEIGHTS[0] / 100
log = logging.getLogger("bench.rollback_detection")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------ the controller

class ControllerLoop:
    """`manage.py runcontroller`'s loop in a thread: tick every `interval_s` under the lease, keeping the
    cadence, then do the Deployment controller's part in the emulator (pods ready at their spec)."""

    def __init__(self, controller: Controller, emulator, interval_s: float) -> None:
        self.controller, self.emulator, self.interval_s = controller, emulator, interval_s
        self.tick_seconds: list[float] = []
        self.failed_ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="controller-loop", daemon=True)

    def start(self) -> ControllerLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.controller.tick()
                self.tick_seconds.append(time.monotonic() - started)
            except LeaseLost:
                pass  # the keeper takes it again; runcontroller waits the same way
            except Exception:  # e.g. the controller's code changing under a running bench: said, then retried
                self.failed_ticks += 1
                log.exception("controller tick failed")
            finally:
                close_old_connections()
            self.emulator.settle_deployments(NAMESPACE, DEPLOYMENT, canary_name(DEPLOYMENT))
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))


class ObservedSplit(EmulatorSplit):
    """The canary's share of pods as the traffic generator reads it, with the wall-clock time of each read."""

    def __init__(self, emulator) -> None:
        super().__init__(emulator, NAMESPACE, DEPLOYMENT)
        self.reads: list[tuple[float, float]] = []

    def __call__(self) -> float:
        share = super().__call__()
        self.reads.append((time.time(), share))
        return share

    def first_read_of(self, share: float, after: float) -> float | None:
        return next((at for at, seen in list(self.reads) if at >= after and seen == share), None)


# ---------------------------------------------------------------- one trial

class TimedTraffic(TrafficGenerator):
    """The traffic generator, also noting when each failed canary answer came back."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.canary_failures: list[float] = []

    def _send(self, connections, arm, body):
        status = super()._send(connections, arm, body)
        if arm == CANARY and status >= 500:
            self.canary_failures.append(time.time())
        return status


@dataclass
class Trial:
    """One onset: the analyses before it, and the seconds from it to each milestone."""

    version: int
    pre_onset_verdicts: collections.Counter = field(default_factory=collections.Counter)
    last_pre_onset_reason: str = ""
    false_alarm: str = ""
    detect_s: float | None = None
    routed_s: float | None = None
    seen_s: float | None = None
    errors_needed: int | None = None
    failed_checks: tuple[str, ...] = ()
    after_last_needed_error_s: float | None = None  # routed, counted from the failure the verdict needed last
    reason: str = ""
    canary_requests: int = 0
    canary_errors: int = 0


@dataclass
class CanaryPod:
    """A trial's new version and the `mlcp serve` that plays its canary pod."""

    version: object
    server: ServeProcess


class Bench:
    """What the trials share: the emulator, Prometheus, the model, its stable server for the whole run; and the
    next canary pod, started in the background while the trial before it warms up (a server takes seconds)."""

    def __init__(self, args, emulator, prometheus, model, production, artifact: bytes, inputs) -> None:
        self.args, self.emulator, self.prometheus = args, emulator, prometheus
        self.model, self.artifact, self.inputs = model, artifact, inputs
        self._background = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench-pods")
        self._next: futures.Future | None = self._background.submit(self._start_pod, 0)
        self.stable: ServeProcess | None = None
        try:
            self.stable = serve_version(production, DATA_DIR / "servers", "stable")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._next is not None and self._next.exception() is None:
            self._next.result().server.stop()
        self._background.shutdown(wait=True)
        if self.stable is not None:
            self.stable.stop()

    def _start_pod(self, index: int) -> CanaryPod:
        try:
            # The same bytes as stable: an A/A canary until its fault switch flips, so a FAIL before is false.
            version = approved_version(self.model, self.artifact)
            return CanaryPod(version, serve_version(version, DATA_DIR / "servers", "canary", seed=index))
        finally:
            close_old_connections()

    def _stop_pod(self, pod: CanaryPod) -> None:
        pod.server.stop()

    def run_trial(self, index: int) -> Trial:
        args = self.args
        pod = self._next.result()
        self._next = None
        trial, canary = Trial(pod.version.number), pod.server
        split = ObservedSplit(self.emulator)
        traffic = None
        try:
            self.prometheus.scrape([self.stable.target, canary.target])
            budget_s = args.warmup_s + args.max_wait_s + 30
            traffic = TimedTraffic(self.stable.url, canary.url, split, self.inputs, rate_per_s=args.rate,
                                   max_requests=int(args.rate * budget_s), max_seconds=budget_s, workers=4,
                                   seed=index).start()
            rollout = services.start_rollout(self.model, pod.version, actor="bench-ci",
                                             reason=f"bench trial {index + 1}")
            # The warm-up counts from the controller's first analysis of the canary (its pods ready).
            _wait(lambda: AnalysisRun.objects.filter(rollout=rollout).exists() or not _active(rollout), 60,
                  "the first analysis")
            if index + 1 < args.trials:
                self._next = self._background.submit(self._start_pod, index + 1)
            # The onset falls anywhere between two ticks.
            onset_in = args.warmup_s + random.Random(index).uniform(0, args.tick_s)
            ended_early = _wait(lambda: not _active(rollout), onset_in, None)
            onset = time.time()  # taken before the switch: nothing is flattered
            onset_at = datetime.fromtimestamp(onset, UTC)
            trial.pre_onset_verdicts = _verdicts_before(rollout, onset_at)
            last = AnalysisRun.objects.filter(rollout=rollout, at__lt=onset_at).order_by("-at").first()
            trial.last_pre_onset_reason = last.reason.split(";")[0] if last else ""  # its first check's words
            if ended_early:
                rollout.refresh_from_db()
                trial.false_alarm = f"{rollout.phase} before the onset: {rollout.message or rollout.phase}"
                return trial
            mark, before = self.emulator.mark(), replicas(self.emulator, NAMESPACE, DEPLOYMENT)
            canary.set_fault(error_rate=args.error_rate)
            if not _wait(lambda: not _active(rollout), args.max_wait_s, None):
                rollout.refresh_from_db()
                services.abort(rollout, actor="bench", reason=f"not rolled back within {args.max_wait_s:g} s")
                _wait(lambda: not _active(rollout), 60, "the abort")
            self._measure(trial, rollout, onset, self._all_on_stable_at(mark, before), split, traffic)
            return trial
        finally:
            if traffic is not None:
                report = traffic.stop()
                trial.canary_requests, trial.canary_errors = report.count(CANARY), report.count(CANARY, 500)
            self._background.submit(self._stop_pod, pod)
            split.close()

    @staticmethod
    def _measure(trial: Trial, rollout: Rollout, onset: float, routed: float | None, split: ObservedSplit,
                 traffic: TimedTraffic) -> None:
        """Fill in `trial`'s seconds from `onset`: the first failing analysis, all traffic on stable (`routed`,
        the emulator's stamp), the generator's first read of it, and `routed` from the error the verdict needed."""
        first_fail = (AnalysisRun.objects.filter(rollout=rollout, verdict="fail",
                                                 at__gte=datetime.fromtimestamp(onset, UTC)).order_by("at").first())
        if first_fail is None or routed is None:
            return
        trial.detect_s, trial.routed_s = first_fail.recorded_at.timestamp() - onset, routed - onset
        trial.reason = first_fail.reason
        trial.failed_checks = tuple(c.get("check", "?") for c in first_fail.evidence.get("checks", [])
                                    if c.get("verdict") == "fail")
        # The generator re-reads the split every 0.25 s: give it a moment to see the rollback.
        _wait(lambda: split.first_read_of(0.0, after=routed) is not None, 5, None)
        seen = split.first_read_of(0.0, after=routed)
        trial.seen_s = seen - onset if seen is not None else None
        trial.errors_needed = _canary_errors_counted(first_fail.evidence)
        failures = [at for at in traffic.canary_failures if at >= onset]
        if trial.errors_needed and len(failures) >= trial.errors_needed:
            trial.after_last_needed_error_s = routed - failures[trial.errors_needed - 1]

    def _all_on_stable_at(self, mark: int, before: tuple[int, int]) -> float | None:
        """When the emulator applied the write after `mark` that left stable at all pods and the canary at none."""
        stable, canary = before
        for write in self.emulator.writes(since=mark):
            if write.namespace != NAMESPACE or write.check is None:
                continue
            pods = (write.spec or {}).get("replicas", 0)
            if write.name == DEPLOYMENT:
                stable = pods
            elif write.name == canary_name(DEPLOYMENT):
                canary = pods
            if (stable, canary) == (PODS, 0):
                return float(write.check)
        return None


def _wait(condition, timeout_s: float, what: str | None) -> bool:
    """Poll `condition` until true (True) or `timeout_s` (False, or TimeoutError naming `what`)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            if what is not None:
                raise TimeoutError(f"{what} did not happen within {timeout_s:.0f} s")
            return False
        time.sleep(0.05)
    return True


def _active(rollout: Rollout) -> bool:
    return Rollout.objects.filter(pk=rollout.pk, phase__in=ACTIVE).exists()


def _verdicts_before(rollout: Rollout, at: datetime) -> collections.Counter:
    """Every analysis of the rollout evaluated before `at`, by verdict, those compacted into summaries included."""
    counts = collections.Counter(AnalysisRun.objects.filter(rollout=rollout, at__lt=at)
                                 .values_list("verdict", flat=True))
    for summary in AnalysisStepSummary.objects.filter(rollout=rollout, last_at__lt=at):
        counts.update(summary.verdicts)
    return counts


def _canary_errors_counted(evidence: dict) -> int | None:
    """How many canary errors the error-split test counted in a failing analysis (None: another check failed)."""
    for check in evidence.get("checks", []):
        if check.get("check") == "canary_vs_stable_errors" and check.get("verdict") == "fail":
            return check.get("canary_errors")
    return None


# -------------------------------------------------------------- the setup

def approved_version(model: RegisteredModel, artifact: bytes):
    """A new signed version of `model`, approved (its gates are not what this bench measures)."""
    version = registry.ingest_bytes(model, artifact, "model.onnx", registry.VersionMetadata(), actor="bench-ci")
    for status in ("gating", "approved"):
        registry.transition_version(version, status, actor="bench-ci", reason="bench: gates skipped")
    return version


def first_release(model: RegisteredModel, version) -> None:
    """Version 1 becomes production the way any first deploy does: a rollout straight to 100%, by the controller."""
    rollout = services.start_rollout(model, version, actor="bench-ci", steps=[100], reason="first release")
    _wait(lambda: not _active(rollout), 60, "the first release")
    rollout.refresh_from_db()
    if rollout.phase != Phase.SUCCEEDED:
        raise RuntimeError(f"the first release ended {rollout.phase}: {rollout.message}")


def run(args) -> tuple[list[Trial], ControllerLoop]:
    progress("setup: migrating a throwaway database")
    call_command("migrate", verbosity=0)
    progress("setup: the reference ResNet (trained once, then cached), the Kubernetes emulator, Prometheus")
    artifact = build_reference_model("resnet").onnx_bytes
    inputs, _ = golden_inputs_and_labels()
    model = RegisteredModel.objects.create(name=MODEL)
    services.set_rollout_target(model, {"namespace": NAMESPACE, "deployment": DEPLOYMENT, "replicas": PODS},
                                actor="bench-admin", reason="bench setup")
    emulator = start_kube_emulator()
    # Each write is stamped with the wall-clock time the emulator applies it: when traffic really moved.
    emulator.watch_writes(lambda user_agent: f"{time.time():.6f}")
    cluster = Cluster(emulator.api_client(), request_timeout=(2.0, 5.0),
                      retry=RetryPolicy(attempts=5, base_delay_s=0.01, max_delay_s=0.05))
    cluster.apps.create_namespaced_deployment(NAMESPACE, stable_deployment(DEPLOYMENT, MODEL, None, PODS))
    emulator.settle_deployments(NAMESPACE, DEPLOYMENT)
    keeper = LeaseKeeper(f"bench-{os.getpid()}", ttl_s=settings.MLCP_CONTROLLER_LEASE_S,
                         poll_s=settings.MLCP_CONTROLLER_LEASE_POLL_S)
    loop = controller = bench = None
    trials: list[Trial] = []
    try:
        with prometheus_server(scrape_interval_s=args.scrape_s) as prometheus:
            # As Controller.from_settings builds it, pointed at this bench's emulator and Prometheus.
            provider = MetricsCircuit(PrometheusMetricsProvider(prometheus.url,
                                                                timeout_s=settings.PROMETHEUS_TIMEOUT_S))
            controller = Controller(cluster, provider, max_workers=4, rollout_timeout_s=args.tick_s, lease=keeper)
            keeper.start()
            _wait(lambda: keeper.grant() is not None, 30, "taking the controller lease")
            loop = ControllerLoop(controller, emulator, args.tick_s).start()
            progress("setup: first release of version 1, through the controller")
            v1 = approved_version(model, artifact)
            first_release(model, v1)
            bench = Bench(args, emulator, prometheus, model, v1, artifact, inputs)
            for index in range(args.trials):
                started = time.monotonic()
                trial = bench.run_trial(index)
                trials.append(trial)
                progress(f"trial {index + 1}/{args.trials} (v{trial.version}, "
                         f"{time.monotonic() - started:.0f} s): {_trial_line(trial)}")
    finally:
        if loop is not None:
            loop.stop()
        if controller is not None:
            controller.stop()
        keeper.release()
        if bench is not None:
            bench.close()
        cluster.close()
        emulator.stop()
    return trials, loop


# ------------------------------------------------------------- the figures

def _trial_line(trial: Trial) -> str:
    before = ", ".join(f"{n} {verdict}" for verdict, n in sorted(trial.pre_onset_verdicts.items())) or "none"
    if trial.false_alarm:
        return f"FALSE ALARM ({trial.false_alarm}); analyses before: {before}"

    def seconds(value):
        return f"{value:.2f} s" if value is not None else "-"
    needed = (f", {seconds(trial.after_last_needed_error_s)} after error {trial.errors_needed} (the last the "
              f"verdict needed)" if trial.after_last_needed_error_s is not None else "")
    return (f"analyses before onset: {before} (the last: {trial.last_pre_onset_reason or '-'}); detected "
            f"{seconds(trial.detect_s)}, all traffic on stable {seconds(trial.routed_s)}{needed}, generator saw it "
            f"{seconds(trial.seen_s)}; canary {trial.canary_requests} requests, {trial.canary_errors} failed")


def p95(values: list[float]) -> float:
    """Nearest rank: the smallest value at or above 95% of them."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


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


def report(args, trials: list[Trial], loop: ControllerLoop, wall_s: float) -> None:
    print(f"machine: {describe_machine()}")
    print(f"setup: ResNet (digits) on `mlcp serve` processes (stable for the whole run, a new one per canary "
          f"version), {args.rate:.0f} req/s split by the replica ratio in the Kubernetes emulator ({PODS} pods), "
          f"Prometheus scraping every {args.scrape_s:g} s, rollouts.controller.Controller ticking every "
          f"{args.tick_s:g} s under the lease; each trial a new version rolled out with the default strategy "
          f"and analysis (step 1: {DEFAULT_WEIGHTS[0]}%, {DEFAULT_PAUSE_S} s), healthy for {args.warmup_s:g} s of "
          f"analysis, then {args.error_rate:.0%} of its requests failing from T0")
    if loop.tick_seconds:
        print(f"controller ticks: {len(loop.tick_seconds)}, median {statistics.median(loop.tick_seconds) * 1000:.0f} "
              f"ms, max {max(loop.tick_seconds) * 1000:.0f} ms, {loop.failed_ticks} failed")
    onsets = [t for t in trials if not t.false_alarm]
    print(f"trials: {len(trials)}; no false alarm before the onset in {len(onsets)} of {len(trials)} "
          f"({sum(sum(t.pre_onset_verdicts.values()) for t in trials)} analyses before onsets: "
          f"{dict(sum((t.pre_onset_verdicts for t in trials), collections.Counter()))})")
    for n, trial in enumerate(trials, 1):
        if trial.false_alarm:
            print(f"  trial {n}: {_trial_line(trial)}")
    detected = [t.detect_s for t in onsets if t.detect_s is not None]
    routed = [t.routed_s for t in onsets if t.routed_s is not None]
    seen = [t.seen_s for t in onsets if t.seen_s is not None]
    missed = len(onsets) - len(routed)
    if missed:
        print(f"  {missed} onset(s) not rolled back within {args.max_wait_s:g} s")
    goal_s = 2 * args.scrape_s + args.tick_s
    if routed:
        print(f"mlcp, seconds from onset over {len(routed)} onsets (median / p95 / max):")
        for what, values in (("first failing analysis recorded", detected),
                             ("all traffic on stable (emulator write)", routed),
                             ("all traffic on stable (traffic generator read it)", seen)):
            if values:
                print(f"  {what}: {statistics.median(values):.2f} / {p95(values):.2f} / {max(values):.2f}")
        print(f"  all traffic on stable, each trial: {' '.join(f'{s:.1f}' for s in routed)}")
        after_needed = [t.after_last_needed_error_s for t in onsets if t.after_last_needed_error_s is not None]
        if after_needed:
            needed = collections.Counter(t.errors_needed for t in onsets if t.after_last_needed_error_s is not None)
            print(f"  all traffic on stable, counted from the failed canary answer the verdict needed last "
                  f"(errors needed: {dict(sorted(needed.items()))}): {statistics.median(after_needed):.2f} / "
                  f"{p95(after_needed):.2f} / {max(after_needed):.2f}")
        reached = p95(routed) <= goal_s and not missed
        print(f"goal: p95 onset -> all traffic on stable <= 2 scrape intervals + 1 tick = {goal_s:g} s: "
              f"{'REACHED' if reached else 'NOT REACHED'} (p95 {p95(routed):.2f} s)")
    else:
        print(f"goal: p95 onset -> all traffic on stable <= {goal_s:g} s: NOT REACHED (no onset rolled back)")
    failed_by = collections.Counter(" + ".join(t.failed_checks) for t in onsets if t.failed_checks)
    if failed_by:
        print(f"first failing analyses, by the checks that failed: {dict(failed_by)}")
    needed = collections.Counter(t.errors_needed for t in onsets if t.errors_needed)
    if needed:
        # What no controller can beat: the wait for the errors the test needs, at the rate the canary makes them.
        k = needed.most_common(1)[0][0]
        per_s = args.rate * FIRST_STEP_SHARE * args.error_rate
        print(f"the wait for the canary's error #{k} alone, at {per_s:g} errors/s (Poisson: {FIRST_STEP_SHARE:.0%} "
              f"of {args.rate:g} req/s, {args.error_rate:.0%} of them failing): median "
              f"{gamma.median(k, scale=1 / per_s):.2f} s, p95 {gamma.ppf(0.95, k, scale=1 / per_s):.2f} s")
    print("for the same onset, computed from documented defaults (best / mean / worst over the onset's phase):")
    for tool, figure in tool_estimates(args.error_rate, args.scrape_s):
        print(f"  {tool}: {figure}")
    print("assumptions: Argo interval and query from the docs' background-analysis example (interval has no "
          "default), failureLimit semantics 'failed > failureLimit', consecutiveErrorLimit (default 4) counts "
          "query errors only and plays no part; Flagger analysis.interval 1m, threshold 5, builtin "
          "request-success-rate min 99 over a 1m window; both query the canary's own traffic, scraped every "
          f"{args.scrape_s:g} s like here, and act on a failed run at once.")
    print(f"bench wall time {wall_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--error-rate", type=float, default=0.1, help="share of canary requests failing after T0")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, both arms together")
    parser.add_argument("--warmup-s", type=float, default=5.0,
                        help="healthy canary analysed this long before the onset")
    parser.add_argument("--max-wait-s", type=float, default=30.0, help="abort a trial's rollout after this long")
    parser.add_argument("--scrape-s", type=float, default=1.0, help="Prometheus scrape interval")
    parser.add_argument("--tick-s", type=float, default=1.0, help="controller tick interval")
    args = parser.parse_args()
    if args.trials < 1 or not 0 < args.error_rate <= 1 or min(args.rate, args.scrape_s, args.tick_s) <= 0:
        parser.error("--trials >= 1, 0 < --error-rate <= 1, and positive --rate, --scrape-s and --tick-s")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    started = time.monotonic()
    trials, loop = run(args)
    report(args, trials, loop, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
