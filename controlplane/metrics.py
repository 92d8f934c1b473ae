"""`/metrics`: mlcp's own state in the Prometheus text format, read from the database at scrape time.

Every figure comes from rows the web can read, so one scrape target (the web
Service) covers the controller too: it keeps its tick histogram on the lease
row (`rollouts.controller.finish_tick`). Six aggregate queries per rendering,
each with a bounded number of result rows; a rendering is served again for
MLCP_METRICS_CACHE_S, so many scrapers cost the database no more than one.
With MLCP_METRICS_TOKEN set, a scraper must send it as a bearer token.
"""

from __future__ import annotations

import hmac
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from registry.models import Blob, GateResult
from rollouts.choices import UNDELIVERED, Delivery, Phase
from rollouts.liveness import TICK_BUCKETS_S, Heartbeat, assess
from rollouts.models import AnalysisRun, ControllerLease, Notification, Rollout

# Gates take seconds (validation) to a quarter of an hour (golden set on a CPU; the task's soft limit is 900 s).
GATE_BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0)
# Label values come from database columns; a runaway column must not become a runaway scrape.
MAX_SERIES = 200


class DatabaseCollector:
    """Collects every mlcp family from the database (a prometheus_client custom collector)."""

    def collect(self):
        yield _rollouts_by_phase()
        yield from _controller()
        yield _analysis_verdicts()
        yield from _gates()
        yield from _notifications()
        yield _blobs_tampered()


def _rollouts_by_phase() -> GaugeMetricFamily:
    counts = dict(Rollout.objects.order_by().values_list("phase").annotate(n=Count("pk"))[:MAX_SERIES])
    family = GaugeMetricFamily("mlcp_rollouts", "Rollouts by phase, terminal ones included.", labels=["phase"])
    for phase in sorted(set(Phase) | set(counts)):
        family.add_metric([str(phase)], counts.get(phase, 0))
    return family


def _controller():
    row = (ControllerLease.objects.order_by("pk")
           .values("holder", "tick_started_at", "tick_finished_at", "tick_count", "tick_seconds_sum",
                   "tick_buckets").first())
    row = row or {"holder": "", "tick_started_at": None, "tick_finished_at": None, "tick_count": 0,
                  "tick_seconds_sum": 0.0, "tick_buckets": []}
    buckets = row["tick_buckets"] if len(row["tick_buckets"] or []) == len(TICK_BUCKETS_S) else [0] * len(
        TICK_BUCKETS_S)
    ticks = HistogramMetricFamily("mlcp_controller_tick_seconds", "Duration of the rollout controller's ticks.")
    ticks.add_metric([], [*((_le(b), c) for b, c in zip(TICK_BUCKETS_S, buckets)), ("+Inf", row["tick_count"])],
                     sum_value=row["tick_seconds_sum"])
    yield ticks
    finished = row["tick_finished_at"]
    yield GaugeMetricFamily("mlcp_controller_last_tick_timestamp_seconds",
                            "When the controller last finished a tick (Unix time; 0: never).",
                            value=finished.timestamp() if finished else 0.0)
    heartbeat = Heartbeat(row["holder"], row["tick_started_at"], finished) if row["holder"] else None
    alive = assess(heartbeat, timezone.now(), settings.MLCP_CONTROLLER_STALE_S).alive
    yield GaugeMetricFamily("mlcp_controller_alive",
                            "1 when a controller ticked within MLCP_CONTROLLER_STALE_S, else 0.", value=int(alive))


def _analysis_verdicts() -> CounterMetricFamily:
    family = CounterMetricFamily("mlcp_analysis_verdicts", "Rollout analyses, by verdict.", labels=["verdict"])
    for verdict, n in AnalysisRun.objects.order_by().values_list("verdict").annotate(n=Count("pk"))[:MAX_SERIES]:
        family.add_metric([verdict], n)
    return family


def _blobs_tampered() -> GaugeMetricFamily:
    # A gauge of rows, not a counter of events: it stays up until someone deals with the blob, so an alert
    # on it keeps firing rather than resolving one scrape later.
    return GaugeMetricFamily("mlcp_blobs_tampered", "Stored blobs whose bytes no longer hash to their digest "
                             "(refused for download).", value=Blob.objects.filter(tampered_at__isnull=False).count())


def _gates():
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    timed = Q(started_at__isnull=False, finished_at__isnull=False)
    buckets = {f"le_{i}": Count("pk", filter=timed & Q(duration__lte=timedelta(seconds=bound)))
               for i, bound in enumerate(GATE_BUCKETS_S)}
    rows = (GateResult.objects.order_by().annotate(duration=duration).values("gate", "verdict")
            .annotate(n=Count("pk"), timed=Count("pk", filter=timed), seconds=Sum("duration", filter=timed),
                      **buckets).order_by("gate", "verdict")[:MAX_SERIES])
    results = GaugeMetricFamily("mlcp_gate_results", "Gate results, by gate and verdict (pending and running "
                                "included).", labels=["gate", "verdict"])
    durations = HistogramMetricFamily("mlcp_gate_duration_seconds", "How long finished gates ran, from "
                                      "GateResult.started_at to finished_at.", labels=["gate", "verdict"])
    for row in rows:
        labels = [row["gate"], row["verdict"]]
        results.add_metric(labels, row["n"])
        if row["timed"]:
            counts = [(_le(bound), row[f"le_{i}"]) for i, bound in enumerate(GATE_BUCKETS_S)]
            seconds = row["seconds"].total_seconds() if row["seconds"] is not None else 0.0
            durations.add_metric(labels, [*counts, ("+Inf", row["timed"])], sum_value=seconds)
    yield results
    yield durations


def _notifications():
    # Dead letters are the deliveries that failed for good; the oldest undelivered age is how late receivers are.
    rows = dict((state, (n, oldest)) for state, n, oldest in Notification.objects.order_by().values_list("state")
                .annotate(n=Count("pk"), oldest=Min("created_at")))
    outbox = GaugeMetricFamily("mlcp_webhook_notifications", "Rollout webhook notifications in the outbox, by "
                               "delivery state (dead: given up).", labels=["state"])
    for state in sorted(set(Delivery) | set(rows)):
        outbox.add_metric([str(state)], rows.get(state, (0, None))[0])
    yield outbox
    oldest = [at for state, (_, at) in rows.items() if state in UNDELIVERED and at is not None]
    yield GaugeMetricFamily("mlcp_webhook_oldest_undelivered_seconds", "Age of the oldest notification not yet "
                            "delivered nor dead (0: none).",
                            value=(timezone.now() - min(oldest)).total_seconds() if oldest else 0.0)


def _le(bound: float) -> str:
    return f"{bound:g}"


# ------------------------------------------------------------------- view

_registry = CollectorRegistry(auto_describe=False)
_registry.register(DatabaseCollector())


class _Rendered:
    """The last rendering, served again while younger than MLCP_METRICS_CACHE_S (per process)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._at: float | None = None
        self._body = b""

    def get(self, max_age_s: float) -> bytes:
        with self._lock:  # one rendering at a time: concurrent scrapes wait for it rather than repeat it
            now = time.monotonic()
            if self._at is None or max_age_s <= 0 or now - self._at >= max_age_s:
                self._body, self._at = generate_latest(_registry), now
            return self._body


_rendered = _Rendered()


@never_cache
@require_GET
def metrics(request):
    token = settings.MLCP_METRICS_TOKEN
    if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                                             f"Bearer {token}".encode()):
        response = HttpResponse("a bearer token is required (MLCP_METRICS_TOKEN)\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="mlcp metrics"'
        return response
    return HttpResponse(_rendered.get(settings.MLCP_METRICS_CACHE_S), content_type=CONTENT_TYPE_LATEST)
