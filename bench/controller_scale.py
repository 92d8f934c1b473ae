"""How long one controller tick takes with 10 to 10,000 progressing rollouts, batched and not.

Real parts: the kmock Kubernetes emulator on loopback (Deployments loaded in
bulk, settled), a real `prometheus` holding synthetic counters backfilled so
every canary matches its stable (the analysis passes or waits, and the rollout
holds in its step), a SQLite database with the rows bulk-inserted. At each size
it times one `Controller.tick` with batched reads (the default) and, as the
baseline, the same tick with `batch_analysis=False` (per-rollout GETs and
queries) at the sizes where that ends in reasonable time. Printed per size:
tick seconds, Prometheus queries, database queries, Kubernetes requests, peak
RSS of the process (emulator included, high water so far) and the verdicts.

Run: .venv/bin/python bench/controller_scale.py [--sizes 10,100,1000,10000 --baseline-up-to 1000]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe_machine  # noqa: E402

T = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)  # the tick's instant; data is recorded before it
STEP_PAUSE_S = 900
STARTS = 10  # steps began at one of this many ticks, 10 s apart, as a controller starts them
SCRAPE_S = 60.0
NAMESPACES = 20
CANARY_RPS, STABLE_RPS = 10.0, 30.0  # 1 canary pod of 4: 25%
BUCKETS = {"0.05": 0.5, "0.1": 0.9, "0.25": 0.99, "+Inf": 1.0}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_counters(path: Path, names: list[str], since: datetime) -> None:
    """OpenMetrics for every arm: requests (code 200) and latency buckets, a sample every SCRAPE_S."""
    start, end = since.timestamp(), T.timestamp()
    times = []
    t = start
    while t <= end:
        times.append(t)
        t += SCRAPE_S
    with path.open("w") as out:
        for name in names:
            for version, track, rps in (("2", "canary", CANARY_RPS), ("1", "stable", STABLE_RPS)):
                labels = f'model="{name}",track="{track}",version="{version}"'
                out.writelines(f'mlcp_model_requests_total{{code="200",{labels}}} {rps * (t - start):.1f} {t:.3f}\n'
                               for t in times)
                for le, share in BUCKETS.items():
                    out.writelines(f'mlcp_model_request_duration_seconds_bucket{{{labels},le="{le}"}} '
                                   f'{rps * share * (t - start):.1f} {t:.3f}\n' for t in times)
        out.write("# EOF\n")


def deployments(name: str, namespace: str) -> list[dict]:
    from k8s.canary import MODEL_LABEL, VERSION_LABEL

    def deployment(dname, version, replicas):
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": dname, "namespace": namespace, "generation": 1, "resourceVersion": "1",
                             "labels": {"app": name, MODEL_LABEL: name, VERSION_LABEL: version}},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "s", "image": "x"}]}}},
                "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                           "readyReplicas": replicas, "availableReplicas": replicas}}
    return [deployment(name, "1", 3), deployment(f"{name}-canary", "2", 1)]


class Counting:
    """Counts database queries on every connection (each worker thread has its own)."""

    def __init__(self):
        from django.db.backends.signals import connection_created

        self.queries = 0
        self._lock = threading.Lock()
        connection_created.connect(self._install, weak=False)

    def _install(self, sender, connection, **kwargs):
        if self._count not in connection.execute_wrappers:
            connection.execute_wrappers.append(self._count)

    def _count(self, execute, sql, params, many, context):
        with self._lock:
            self.queries += 1
        return execute(sql, params, many, context)


GOAL_ROLLOUTS, GOAL_TICK_S = 10_000, 10.0  # issue 13: the default tick interval


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--baseline-up-to", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory(prefix="mlcp-bench-") as tmp:
        tmp = Path(tmp)
        os.environ.update(MLCP_DATA_DIR=str(tmp / "data"), DJANGO_SETTINGS_MODULE="controlplane.settings")
        os.environ.pop("DATABASE_URL", None)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        # Django's connection setup reads the settings: count from here on.
        counting = Counting()

        from devtools.embedded.kube import DEPLOYMENTS, start_kube_emulator
        from devtools.embedded.prometheus import PrometheusServer
        from k8s import Cluster, RetryPolicy
        from registry import services as registry
        from registry.models import ModelVersion, RegisteredModel
        from registry.services import VersionMetadata
        from rollouts import services
        from rollouts.analysis import AnalysisConfig
        from rollouts.choices import Phase
        from rollouts.controller import Controller
        from rollouts.lease import Grant, acquire_lease
        from rollouts.metrics import PrometheusMetricsProvider, observation_request
        from rollouts.models import Rollout
        from tests.factories import tiny_onnx

        total = max(sizes)
        names = [f"m{i:05d}" for i in range(total)]
        config = AnalysisConfig()
        request = observation_request(config, "x", "2", "1", T, timedelta(seconds=STEP_PAUSE_S))
        since = T - timedelta(seconds=max(request.windows_s) + config.evaluation_delay_s + 600)

        progress(f"backfilling Prometheus: {total} rollouts x 2 arms x 5 series, a sample every {SCRAPE_S:.0f}s")
        prometheus = PrometheusServer(tmp / "prometheus")
        source = tmp / "counters.om"
        write_counters(source, names, since)
        (tmp / "prometheus" / "data").mkdir(parents=True)
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source),
                        str(tmp / "prometheus" / "data")], check=True, capture_output=True)
        source.unlink()
        prometheus.start(timeout_s=300)
        progress("Prometheus ready; starting the Kubernetes emulator")
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per request otherwise
        # The controller logs where a batch spent its time (read, listed, planned, metrics, judged, written).
        phases = logging.getLogger("rollouts.controller")
        phases.setLevel(logging.INFO)
        phases.addHandler(logging.StreamHandler(sys.stderr))
        phases.propagate = False
        emulator = start_kube_emulator()
        cluster = Cluster(emulator.api_client(), retry=RetryPolicy(attempts=3, base_delay_s=0.05))
        # The client imports its API modules on first use (seconds): a running controller did long ago.
        assert cluster.apps is not None

        # One model made through the registry; the rest copy its rows in bulk.
        template = RegisteredModel.objects.create(name="template")
        stable_v = registry.ingest_bytes(template, tiny_onnx(seed=1), "model.onnx", VersionMetadata(), actor="bench")
        canary_v = registry.ingest_bytes(template, tiny_onnx(seed=2), "model.onnx", VersionMetadata(), actor="bench")
        strategy = {"steps": [{"weight": 25, "pause_s": STEP_PAUSE_S, "analysis": True},
                              {"weight": 100, "pause_s": 0, "analysis": False}]}
        grant = Grant("bench", acquire_lease("bench", ttl_s=3600))

        created = 0
        rows = []
        print(f"controller tick, {args.workers} workers per lane, {describe_machine()}")
        print(f"{'rollouts':>9} {'mode':>9} {'tick s':>8} {'prom q':>7} {'db q':>7} {'k8s req':>8} "
              f"{'peak MB':>8}  verdicts")
        for size in sizes:
            progress(f"creating rollouts {created + 1}..{size}")
            batch = names[created:size]
            models = RegisteredModel.objects.bulk_create([RegisteredModel(name=n) for n in batch], batch_size=1000)
            versions = []
            for model in models:
                for source_version, number in ((stable_v, 1), (canary_v, 2)):
                    version = ModelVersion(**{f.attname: getattr(source_version, f.attname)
                                              for f in ModelVersion._meta.concrete_fields if not f.primary_key})
                    version.model_id, version.number = model.pk, number
                    version.status = "deployed" if number == 1 else "approved"
                    versions.append(version)
            versions = ModelVersion.objects.bulk_create(versions, batch_size=1000)
            objects = []
            rollouts = []
            for i, model in enumerate(models):
                namespace = f"ns{(created + i) % NAMESPACES}"
                objects += deployments(model.name, namespace)
                started = T - timedelta(seconds=300 + 10 * ((created + i) % STARTS))
                rollouts.append(Rollout(
                    model_id=model.pk, version_id=versions[2 * i + 1].pk, stable_version_id=versions[2 * i].pk,
                    strategy=strategy, phase=Phase.PROGRESSING, current_step=0, step_started_at=started,
                    deadline_at=T + timedelta(days=1), approval_required=False,
                    traffic={"router": "replica_ratio", "namespace": namespace, "deployment": model.name,
                             "replicas": 4}))
            Rollout.objects.bulk_create(rollouts, batch_size=1000)
            emulator.load_objects(DEPLOYMENTS, objects)
            created = size

            for batched in (True, False):
                if not batched and size > args.baseline_up_to:
                    continue
                provider = CountingProvider(prometheus.url, timeout_s=30)
                controller = Controller(cluster, provider, max_workers=args.workers, rollout_timeout_s=600,
                                        batch_analysis=batched)
                mode = "batched" if batched else "baseline"
                progress(f"{size} rollouts: one {mode} tick")
                db_before, k8s_before = counting.queries, emulator.mark()
                clock = time.monotonic()
                results = controller.tick(T, grant=grant)
                elapsed = time.monotonic() - clock
                db, k8s = counting.queries - db_before, emulator.mark() - k8s_before
                peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                outcomes = Counter(results.values())
                verdicts = Counter(r.message.split(":")[0].split(" (")[0][:40] for r in
                                   Rollout.objects.filter(phase=Phase.PROGRESSING).only("message")[:size])
                rows.append((size, mode, elapsed))
                print(f"{size:>9} {mode:>9} {elapsed:>8.2f} {provider.queries:>7} {db:>7} {k8s:>8} "
                      f"{peak_mb:>8.0f}  {dict(outcomes)} {dict(verdicts.most_common(2))}", flush=True)
        emulator.stop()
        prometheus.stop()
    for size, mode, elapsed in rows:
        if size == GOAL_ROLLOUTS and mode == "batched":
            print(f"goal: {GOAL_ROLLOUTS} progressing rollouts in one tick of <= {GOAL_TICK_S:.0f} s: "
                  f"{'met' if elapsed <= GOAL_TICK_S else 'NOT met'} ({elapsed:.1f} s)")
    return 0


def _counting_provider():
    from rollouts.metrics import PrometheusMetricsProvider

    class CountingProvider(PrometheusMetricsProvider):
        """Counts the HTTP queries sent, one and batched alike (batched ones from two threads at once)."""

        queries = 0
        _counting = threading.Lock()

        def _query(self, query, at):
            with self._counting:
                self.queries += 1
            return super()._query(query, at)

        def _post_query(self, query, instant):
            with self._counting:
                self.queries += 1
            return super()._post_query(query, instant)

    return CountingProvider


class _Lazy:
    def __call__(self, *args, **kwargs):
        return _counting_provider()(*args, **kwargs)


CountingProvider = _Lazy()

if __name__ == "__main__":
    sys.exit(main())
