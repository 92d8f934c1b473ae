"""Where the rollout analysis gets its numbers: a metrics provider behind a
narrow interface (Prometheus in production and tests), and `analyze`, which
runs every check on one observation and keeps the queries as evidence.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from controlplane.errors import UpstreamUnavailable
from rollouts.analysis import (
    AnalysisConfig,
    CheckResult,
    RequestCounts,
    Verdict,
    check_burn_rate,
    check_canary_errors,
    check_latency,
    combine,
    scaled_burn_windows,
)
from rollouts.analysis.result import to_json_value

CANARY, STABLE = "canary", "stable"


class MetricsUnavailable(UpstreamUnavailable):
    """Prometheus did not answer, or answered with an error: never read as zero."""

    code = "metrics_unavailable"


@dataclass(frozen=True)
class PromQLTemplates:
    """PromQL for one arm (model, version, track) over one window.

    ``$selector`` becomes ``model="..",version="..",track=".."`` and ``$window``
    a range such as ``600s``. The errors query adds ``0 * requests`` so that an
    arm with traffic but no failed request yet reads 0, while an arm with no
    series at all still reads no data.
    """

    requests: str = "sum(increase(mlcp_model_requests_total{$selector}[$window]))"
    errors: str = (
        'sum(increase(mlcp_model_requests_total{$selector,code=~"$error_codes"}[$window]))'
        " or 0 * sum(increase(mlcp_model_requests_total{$selector}[$window]))"
    )
    p95: str = (
        "histogram_quantile(0.95, sum by (le) "
        "(rate(mlcp_model_request_duration_seconds_bucket{$selector}[$window])))"
    )
    error_codes: str = "5.."

    def render(self, template: str, model: str, version: str, track: str, window_s: float) -> str:
        """Fill one template for one arm and window."""
        selector = ",".join(
            f'{label}="{_escape(value)}"'
            for label, value in (("model", model), ("version", version), ("track", track))
        )
        return string.Template(template).substitute(
            selector=selector, window=f"{int(round(window_s))}s", error_codes=self.error_codes
        )


@dataclass(frozen=True)
class QueryRecord:
    """One query as sent, and what came back (None: no series or NaN)."""

    name: str
    query: str
    value: float | None
    raw: str | None


@dataclass(frozen=True)
class ArmObservation:
    """One arm's numbers: request counts per window (seconds) and p95 in seconds."""

    track: str
    version: str
    counts: dict[float, RequestCounts | None]
    p95_s: float | None


@dataclass(frozen=True)
class Observation:
    """Both arms of a model at one instant, with every query behind the numbers."""

    model: str
    at: datetime
    windows_s: tuple[float, ...]
    latency_window_s: float
    canary: ArmObservation
    stable: ArmObservation
    queries: tuple[QueryRecord, ...] = field(default_factory=tuple)


class MetricsProvider(Protocol):
    """What the analysis needs from a metrics backend."""

    def observe(
        self,
        model: str,
        canary_version: str,
        stable_version: str,
        at: datetime,
        windows_s: Sequence[float],
        latency_window_s: float,
    ) -> Observation: ...


class PrometheusMetricsProvider:
    """Reads request counters and latency histograms from Prometheus' HTTP API,
    evaluated at an explicit instant so a past decision can be replayed."""

    def __init__(self, url: str, timeout_s: float = 5.0, templates: PromQLTemplates | None = None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.templates = templates or PromQLTemplates()
        # Few fast retries: a controller tick must not hang for long on a dead
        # Prometheus; it will ask again on the next tick anyway.
        retry = Retry(
            total=2,
            backoff_factor=0.1,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "POST"}),
            raise_on_status=False,
        )
        self._client = PrometheusConnect(url=self.url, retry=retry, timeout=timeout_s, disable_ssl=False)

    def observe(
        self,
        model: str,
        canary_version: str,
        stable_version: str,
        at: datetime,
        windows_s: Sequence[float],
        latency_window_s: float,
    ) -> Observation:
        """Query both arms at ``at``; raises `MetricsUnavailable` if Prometheus fails."""
        at = _aware(at)
        windows = tuple(sorted({float(w) for w in windows_s}))
        records: list[QueryRecord] = []
        arms = {
            track: self._observe_arm(model, version, track, at, windows, latency_window_s, records)
            for track, version in ((CANARY, canary_version), (STABLE, stable_version))
        }
        return Observation(
            model=model,
            at=at,
            windows_s=windows,
            latency_window_s=float(latency_window_s),
            canary=arms[CANARY],
            stable=arms[STABLE],
            queries=tuple(records),
        )

    def _observe_arm(self, model, version, track, at, windows, latency_window_s, records) -> ArmObservation:
        counts = {}
        for window_s in windows:
            total = self._query(f"{track}.requests.{window_s:.0f}s", self.templates.requests,
                                model, version, track, window_s, at, records)
            errors = self._query(f"{track}.errors.{window_s:.0f}s", self.templates.errors,
                                 model, version, track, window_s, at, records)
            counts[window_s] = None if total is None or errors is None else RequestCounts(total, errors)
        p95 = self._query(f"{track}.p95.{latency_window_s:.0f}s", self.templates.p95,
                          model, version, track, latency_window_s, at, records)
        return ArmObservation(track=track, version=version, counts=counts, p95_s=p95)

    def _query(self, name, template, model, version, track, window_s, at, records) -> float | None:
        query = self.templates.render(template, model, version, track, window_s)
        params = {"time": f"{at.timestamp():.3f}", "timeout": f"{max(1, int(self.timeout_s * 1000))}ms"}
        try:
            result = self._client.custom_query(query, params=params)
        except (requests.RequestException, PrometheusApiClientException, ValueError) as exc:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} did not answer a query: {exc}", url=self.url, query=query
            ) from exc
        if len(result) > 1:
            raise MetricsUnavailable(
                f"expected one series from Prometheus, got {len(result)}",
                code="metrics_unexpected_shape", url=self.url, query=query,
            )
        raw = result[0]["value"][1] if result else None
        value = None if raw is None or math.isnan(float(raw)) else float(raw)
        records.append(QueryRecord(name=name, query=query, value=value, raw=raw))
        return value


@dataclass(frozen=True)
class AnalysisReport:
    """One analysis of a canary at one instant: verdict, checks and observation."""

    model: str
    canary_version: str
    stable_version: str
    at: datetime
    step_window_s: float
    verdict: Verdict
    reason: str
    checks: tuple[CheckResult, ...]
    observation: Observation

    def evidence(self) -> dict:
        """Everything needed to audit or replay the decision, as plain JSON values."""
        return {
            "model": self.model,
            "canary_version": self.canary_version,
            "stable_version": self.stable_version,
            "at": self.at.isoformat(),
            "step_window_s": self.step_window_s,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "checks": [c.evidence() for c in self.checks],
            "queries": to_json_value(list(self.observation.queries)),
        }


def analyze(
    provider: MetricsProvider,
    config: AnalysisConfig,
    model: str,
    canary_version: str,
    stable_version: str,
    at: datetime,
    step_duration: timedelta,
    *,
    step_started_at: datetime | None = None,
) -> AnalysisReport:
    """Run burn rate, canary-vs-stable errors and latency on one observation.

    Burn windows are scaled from ``step_duration``. The sequential test and
    latency look at the step's window: ``step_duration``, or only the time
    since ``step_started_at`` when given (the error split assumes one traffic
    share, so counts from the previous step must not leak in).
    """
    at = _aware(at)
    step_window_s = step_duration.total_seconds()
    if step_started_at is not None:
        since_start = (at - _aware(step_started_at)).total_seconds()
        step_window_s = max(config.min_window_s, min(step_window_s, since_start))
    step_window_s = float(round(step_window_s))
    burn_windows = scaled_burn_windows(step_duration, config.burn_policies, config.min_window_s)
    windows = {w for pair in burn_windows for w in (pair.long_s, pair.short_s)} | {step_window_s}
    observation = provider.observe(model, canary_version, stable_version, at, sorted(windows), step_window_s)

    canary_step = observation.canary.counts.get(step_window_s)
    stable_step = observation.stable.counts.get(step_window_s)
    checks = (
        check_burn_rate(config.slo_target, burn_windows, observation.canary.counts, config.min_requests),
        check_canary_errors(
            canary_step.errors if canary_step else None,
            stable_step.errors if stable_step else None,
            _canary_share(canary_step, stable_step),
            canary_step.total if canary_step else None,
            alpha=config.alpha,
            min_requests=config.min_requests,
            pass_at_or_below_bayes_factor=config.pass_at_or_below_bayes_factor,
        ),
        check_latency(
            observation.canary.p95_s,
            observation.stable.p95_s,
            threshold_ms=config.latency_threshold_ms,
            max_ratio_to_stable=config.max_latency_ratio,
            min_gap_ms=config.min_latency_gap_ms,
            canary_requests=canary_step.total if canary_step else None,
            min_requests=config.min_requests,
        ),
    )
    combined = combine(checks)
    return AnalysisReport(
        model=model,
        canary_version=canary_version,
        stable_version=stable_version,
        at=at,
        step_window_s=step_window_s,
        verdict=combined.verdict,
        reason=combined.reason,
        checks=combined.checks,
        observation=observation,
    )


def _canary_share(canary: RequestCounts | None, stable: RequestCounts | None) -> float | None:
    # The share of requests actually served, not the weight asked for: replica
    # ratios only approximate weights, and H0 of the error split needs the truth.
    if canary is None or stable is None or canary.total + stable.total <= 0:
        return None
    return canary.total / (canary.total + stable.total)


def _aware(at: datetime) -> datetime:
    # A naive datetime is read as UTC rather than the host's zone, so a replay
    # on a laptop asks Prometheus for the same instant the controller did.
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
