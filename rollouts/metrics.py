"""Where the rollout analysis gets its numbers: a metrics provider behind a
narrow interface (Prometheus in production and tests); `analyze`, which
runs the policy's checks on one observation and keeps the queries as
evidence; and `analyze_tick`, the one analysis of a controller tick that
the controller, a replay and a backtest all run.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from controlplane.errors import UpstreamUnavailable
from k8s import RouterTarget, build_router
from rollouts.analysis import (
    AnalysisConfig,
    CheckResult,
    RequestCounts,
    Verdict,
    check_burn_rate,
    check_canary_errors,
    check_class_mix,
    check_latency,
    check_traffic_split,
    combine,
    quantile_from_buckets,
    scaled_burn_windows,
    series_increase,
)
from rollouts.analysis.result import to_json_value
from rollouts.analysis.verdict import BURN_RATE, CLASS_MIX, ERRORS, LATENCY, TRAFFIC_SPLIT
from rollouts.strategy import Step

CANARY, STABLE = "canary", "stable"


class MetricsUnavailable(UpstreamUnavailable):
    """Prometheus did not answer, or answered with an error: never read as zero."""

    code = "metrics_unavailable"


@dataclass(frozen=True)
class PromQLTemplates:
    """PromQL for one arm (model, version, track) at one instant.

    ``$selector`` becomes ``model="..",version="..",track=".."`` and
    ``$lookback`` a range such as ``900s``. The query reads the raw values of
    every counter the analysis needs (requests by code, latency buckets by
    ``le``, predictions by class), each series' last sample in the lookback;
    `rollouts.analysis.counts` turns two instants into a window's counts.
    """

    counters: str = (
        'last_over_time({__name__=~"mlcp_model_requests_total|mlcp_model_request_duration_seconds_bucket'
        '|mlcp_model_predictions_total",$selector}[$lookback])'
    )
    error_codes: str = "5.."
    # A series' last sample before a window's start may be this much older than the window.
    lookback_margin_s: float = 300.0

    def render(self, template: str, model: str, version: str, track: str, lookback_s: float) -> str:
        """Fill one template for one arm and lookback."""
        selector = ",".join(
            f'{label}="{_escape(value)}"'
            for label, value in (("model", model), ("version", version), ("track", track))
        )
        return string.Template(template).substitute(selector=selector, lookback=f"{int(math.ceil(lookback_s))}s")


@dataclass(frozen=True)
class QueryRecord:
    """One query as sent, and what came back: ``value`` the arm's request counter
    (summed over its series; None: no series), ``raw`` its sums by code as JSON."""

    name: str
    query: str
    value: float | None
    raw: str | None


@dataclass(frozen=True)
class ArmWindow:
    """What one arm counted in one window: requests, failed requests, cumulative
    latency buckets (upper bound in seconds -> requests) and predictions by class."""

    requests: float
    errors: float
    latency_buckets: dict[float, float]
    classes: dict[str, float]


@dataclass(frozen=True)
class ArmObservation:
    """One arm's numbers: counts per window (seconds) and the step window's p95 in seconds."""

    track: str
    version: str
    windows: dict[float, ArmWindow | None]
    latency_window_s: float

    @property
    def counts(self) -> dict[float, RequestCounts | None]:
        """Requests and errors per window, as the burn-rate check reads them."""
        return {w: None if a is None else RequestCounts(a.requests, a.errors) for w, a in self.windows.items()}

    @property
    def step(self) -> ArmWindow | None:
        """The step window's counts."""
        return self.windows.get(self.latency_window_s)

    @property
    def p95_s(self) -> float | None:
        step = self.step
        if step is None or not step.latency_buckets:
            return None
        p95 = quantile_from_buckets(0.95, step.latency_buckets.items())
        return None if math.isnan(p95) else p95


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
    """Reads request counters, latency histograms and prediction counters from
    Prometheus' HTTP API as raw values at explicit instants (the end of the
    windows and each window's start), so a past decision can be replayed and a
    series born mid-window is counted in full."""

    def __init__(self, url: str, timeout_s: float = 5.0, templates: PromQLTemplates | None = None,
                 concurrent_batches: int = 2, models_per_query: int = 1000):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.templates = templates or PromQLTemplates()
        # Batched queries in flight at once: while Prometheus evaluates one, this process parses the
        # last answer (that parsing, not Prometheus, is most of a large tick's metrics time).
        self.concurrent_batches = concurrent_batches
        # A batched query names this many models at most (its selector is a regex of their names).
        self.models_per_query = models_per_query
        # Few fast retries: a controller tick must not hang for long on a dead
        # Prometheus; it will ask again on the next tick anyway.
        retry = Retry(
            total=2,
            backoff_factor=0.1,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "POST"}),
            raise_on_status=False,
        )
        # One session for every query, single or batched: its connection pool and retries are reused.
        self._session = requests.Session()
        self._client = PrometheusConnect(url=self.url, retry=retry, timeout=timeout_s, disable_ssl=False,
                                         session=self._session)

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
        windows = tuple(sorted({float(w) for w in windows_s} | {float(latency_window_s)}))
        records: list[QueryRecord] = []
        kinds = _SeriesKinds(self.templates.error_codes)
        arms = {
            track: self._observe_arm(model, version, track, at, windows, float(latency_window_s), records, kinds)
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

    def _observe_arm(self, model, version, track, at, windows, latency_window_s, records, kinds) -> ArmObservation:
        # One lookback for every instant: a series seen at the end is then also
        # seen at a window's start if it had a sample before it (never mistaken for newborn).
        lookback_s = max(windows) + self.templates.lookback_margin_s
        query = self.templates.render(self.templates.counters, model, version, track, lookback_s)
        end = self._values(f"{track}.counters@end", query, at, records, kinds)
        out = {}
        for window_s in windows:
            start = self._values(f"{track}.counters@-{window_s:.0f}s", query, at - timedelta(seconds=window_s),
                                 records, kinds)
            out[window_s] = _window(series_increase(start, end), kinds)
        return ArmObservation(track=track, version=version, windows=out, latency_window_s=latency_window_s)

    def _query(self, query: str, at: datetime) -> list[dict]:
        """The one HTTP call: an instant query's result rows at `at`."""
        params = {"time": f"{at.timestamp():.3f}", "timeout": f"{max(1, int(self.timeout_s * 1000))}ms"}
        try:
            return self._client.custom_query(query, params=params)
        except (requests.RequestException, PrometheusApiClientException, ValueError) as exc:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} did not answer a query: {exc}", url=self.url, query=query
            ) from exc

    def _values(self, name, query, at, records, kinds) -> dict[frozenset, float]:
        """Each series' raw value at `at` (its labels without the name), recorded as evidence."""
        values = {}
        for row in self._query(query, at) or ():
            value = float(row["value"][1])
            if not math.isnan(value):
                values[kinds.series(row["metric"])] = value
        records.append(_record(name, query, at.timestamp(), values, kinds))
        return values


    # --- many rollouts at once ---------------------------------------------

    def observe_many(self, requests_: Sequence["ObservationRequest"]) -> dict:
        """Observe every request with one query per (instant, lookback) for all their arms.

        Returns {request: Observation or MetricsUnavailable}. Each arm's values at
        each instant are exactly what `observe` would read for it (the same
        last sample at or before the instant within the same lookback), and its
        evidence names the per-arm query `observe` would have sent, so a replay
        of one rollout reads the same numbers. A failed batch fails only the
        requests that needed it. A query names up to `models_per_query` models,
        and up to `concurrent_batches` queries are in flight at once.
        """
        plans = {request: self._arm_reads(request) for request in requests_}
        wanted: dict[tuple[float, float], set[tuple[str, str, str]]] = {}
        for reads in plans.values():
            for arm, lookback_s, instants in reads:
                for instant in instants.values():
                    wanted.setdefault((instant, lookback_s), set()).add(arm)
        batches = [(key, part) for key, arms in wanted.items()
                   for part in _by_models(sorted(arms), self.models_per_query)]
        kinds = _SeriesKinds(self.templates.error_codes)
        failed: dict[tuple[float, float], MetricsUnavailable] = {}

        def read_part(batch):
            key, part = batch
            if key in failed:  # one failed part fails its key: a dead Prometheus costs a timeout per key, not per part
                return failed[key]
            answer = self._batch_values(part, *key, kinds)
            if isinstance(answer, MetricsUnavailable):
                failed.setdefault(key, answer)
            return answer
        with ThreadPoolExecutor(max_workers=max(1, self.concurrent_batches),
                                thread_name_prefix="prometheus-batch") as pool:
            answers = pool.map(read_part, batches)
            read: dict[tuple[float, float], dict | MetricsUnavailable] = {key: {} for key in wanted}
            for (key, _), answer in zip(batches, answers, strict=True):
                if not isinstance(read[key], MetricsUnavailable):
                    if isinstance(answer, MetricsUnavailable):
                        read[key] = answer
                    else:
                        read[key].update(answer)
        return {request: self._assemble(request, reads, read, kinds) for request, reads in plans.items()}

    def _arm_reads(self, request: "ObservationRequest"):
        """[(arm, lookback, {name: instant})] for both arms of a request, in `observe`'s order."""
        at = _aware(request.at).timestamp()
        windows = request.windows
        lookback_s = float(int(math.ceil(max(windows) + self.templates.lookback_margin_s)))
        reads = []
        for track, version in ((CANARY, request.canary_version), (STABLE, request.stable_version)):
            instants = {f"{track}.counters@end": at}
            for window_s in windows:
                instants[f"{track}.counters@-{window_s:.0f}s"] = at - window_s
            reads.append(((request.model, str(version), track), lookback_s, instants))
        return reads

    def _batch_values(self, arms, instant: float, lookback_s: float, kinds) -> dict | MetricsUnavailable:
        """{arm: {series labels: value}} at `instant` for every arm, in one query; or why it failed."""
        selector = ",".join(
            f'{label}=~"{"|".join(_regex_literal(v) for v in sorted({arm[i] for arm in arms}))}"'
            for i, label in enumerate(("model", "version", "track")))
        query = string.Template(self.templates.counters).substitute(selector=selector, lookback=f"{int(lookback_s)}s")
        try:
            rows = self._post_query(query, instant)
        except MetricsUnavailable as exc:
            return exc
        out: dict = {arm: {} for arm in arms}
        for row in rows:
            metric = row["metric"]
            values = out.get((metric.get("model"), metric.get("version"), metric.get("track")))
            if values is None:  # the regexes select the cross product; keep only the arms asked for
                continue
            value = float(row["value"][1])
            if not math.isnan(value):
                values[kinds.series(metric)] = value
        return out

    def _post_query(self, query: str, instant: float) -> list[dict]:
        # POST: a batch's selector names up to `chunk` models, too long for a URL.
        data = {"query": query, "time": f"{instant:.3f}", "timeout": f"{max(1, int(self.timeout_s * 1000))}ms"}
        try:
            response = self._session.post(f"{self.url}/api/v1/query", data=data, timeout=self.timeout_s)
            if response.status_code != 200:
                raise PrometheusApiClientException(f"HTTP Status Code {response.status_code} ({response.content[:300]!r})")
            return response.json()["data"]["result"]
        except (requests.RequestException, PrometheusApiClientException, ValueError, KeyError) as exc:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} did not answer a batched query: {exc}", url=self.url) from exc

    def _assemble(self, request, reads, read, kinds):
        records: list[QueryRecord] = []
        arms = {}
        windows = request.windows
        for (model, version, track), lookback_s, instants in reads:
            query = self.templates.render(self.templates.counters, model, version, track, lookback_s)
            values = {}
            for name, instant in instants.items():
                batch = read[instant, lookback_s]
                if isinstance(batch, MetricsUnavailable):
                    return batch
                values[name] = batch[model, version, track]
                records.append(_record(name, query, instant, values[name], kinds))
            end = values[f"{track}.counters@end"]
            out = {w: _window(series_increase(values[f"{track}.counters@-{w:.0f}s"], end), kinds) for w in windows}
            arms[track] = ArmObservation(track=track, version=version, windows=out,
                                         latency_window_s=request.latency_window_s)
        return Observation(model=request.model, at=_aware(request.at), windows_s=windows,
                           latency_window_s=request.latency_window_s, canary=arms[CANARY], stable=arms[STABLE],
                           queries=tuple(records))


@dataclass(frozen=True)
class ObservationRequest:
    """What one analysis asks the provider: both arms of a model at one instant, over these windows."""

    model: str
    canary_version: str
    stable_version: str
    at: datetime
    windows_s: tuple[float, ...]
    latency_window_s: float

    @property
    def windows(self) -> tuple[float, ...]:
        """The windows `observe` reads: the burn windows and the step window, each once, ascending."""
        return tuple(sorted({float(w) for w in self.windows_s} | {float(self.latency_window_s)}))

    def observe_with(self, provider) -> Observation:
        return provider.observe(self.model, self.canary_version, self.stable_version, self.at,
                                list(self.windows_s), self.latency_window_s)


def _by_models(arms: list, models_per_query: int) -> list[list]:
    """`arms` in parts of up to `models_per_query` models (every arm of a model in one part): a query each."""
    by_model: dict[str, list] = {}
    for arm in arms:
        by_model.setdefault(arm[0], []).append(arm)
    models = sorted(by_model)
    return [[arm for model in models[begin:begin + models_per_query] for arm in by_model[model]]
            for begin in range(0, len(models), models_per_query)]


REQUESTS, BUCKET, CLASS, OTHER = "requests", "bucket", "class", "other"


class _SeriesKinds:
    """Each series' identity and what it counts, read from its labels once per observation.

    A series is read at every instant of an observation and summed in every
    window; parsing its labels each time (a dict, a float, a regex) and
    comparing equal label sets item by item was a third of a large tick's
    metrics CPU. So the first read of a series keeps its label set, later reads
    share that object (a dictionary lookup on it is then one identity check),
    and its kind is parsed once. One lives for one `observe` or `observe_many`,
    so it never outgrows a tick. Of a series' labels, ``le`` makes it a latency
    bucket, then ``class`` a prediction count, then ``code`` a request count (an
    error where it matches the error codes).
    """

    def __init__(self, error_codes: str) -> None:
        self._is_error = re.compile(error_codes).fullmatch
        self._known: dict[frozenset, tuple[str, object, bool]] = {}
        self._series: dict[frozenset, frozenset] = {}

    def series(self, metric: dict) -> frozenset:
        """A series' identity: its labels without the metric's name (which `last_over_time` drops anyway)."""
        metric.pop("__name__", None)
        labels = frozenset(metric.items())
        return self._series.setdefault(labels, labels)

    def __call__(self, labels: frozenset) -> tuple[str, object, bool]:
        """(kind, bucket bound or class or code, whether an error)."""
        kind = self._known.get(labels)
        if kind is None:
            named = dict(labels)
            if "le" in named:
                kind = (BUCKET, float(named["le"]), False)
            elif "class" in named:
                kind = (CLASS, named["class"], False)
            elif "code" in named:
                kind = (REQUESTS, named["code"], self._is_error(named["code"]) is not None)
            else:
                kind = (OTHER, None, False)
            self._known[labels] = kind
        return kind


def _window(increases: dict, kinds: _SeriesKinds) -> ArmWindow | None:
    """One arm's counts in one window from its series' increases."""
    requests, errors, buckets, classes, any_requests = 0.0, 0.0, {}, {}, False
    for labels, value in increases.items():
        kind, key, is_error = kinds(labels)
        if kind is BUCKET:
            buckets[key] = buckets.get(key, 0.0) + value
        elif kind is CLASS:
            classes[key] = classes.get(key, 0.0) + value
        elif kind is REQUESTS:
            any_requests = True
            requests += value
            if is_error:
                errors += value
    # No request series at all is no data, never zero requests.
    return ArmWindow(requests, errors, buckets, classes) if any_requests else None


def _record(name: str, query: str, instant: float, values: dict, kinds: _SeriesKinds) -> QueryRecord:
    """The evidence `observe` keeps for one read: the arm's request counter by code."""
    by_code: dict[str, float] = {}
    for labels, value in values.items():
        kind, code, _ = kinds(labels)
        if kind is REQUESTS:
            by_code[code] = by_code.get(code, 0.0) + value
    return QueryRecord(name=name, query=f"{query} @ {instant:.3f}",
                       value=sum(by_code.values()) if by_code else None,
                       raw=json.dumps(dict(sorted(by_code.items()))) if by_code else None)


def _regex_literal(value: str) -> str:
    """`value` matched literally inside a PromQL regex in a double-quoted string."""
    return _escape(re.escape(str(value)))


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
    intended_share: float | None = None
    observed_share: float | None = None

    def evidence(self) -> dict:
        """Everything needed to audit or replay the decision, as plain JSON values."""
        return {
            "model": self.model,
            "canary_version": self.canary_version,
            "stable_version": self.stable_version,
            "at": self.at.isoformat(),
            "evaluated_at": self.observation.at.isoformat(),
            "step_window_s": self.step_window_s,
            "intended_share": self.intended_share,
            "observed_share": self.observed_share,
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
    intended_share: float | None = None,
    analysed_steps: int = 1,
) -> AnalysisReport:
    """Run the checks ``config.checks`` names on one observation.

    Burn windows are scaled from ``step_duration``. The sequential tests and
    the split guard look at the step's window: ``step_duration``, or only the
    time since ``step_started_at`` when given (the tests assume one traffic
    share, so counts from the previous step must not leak in; its window
    starts at the last scrape at or before the step's start). Queries are
    evaluated ``config.evaluation_delay_s`` before ``at``. ``intended_share``
    is the canary's share of traffic the router was set to (None: the split
    guard does not run); every test uses the share the canary really served.
    Each step starts its tests afresh, so a rollout of ``analysed_steps``
    steps gives each step's tests ``1 / analysed_steps`` of their alpha: the
    chance that any test ever fails a good canary in the whole rollout stays
    at most ``config.alpha``.
    """
    request = observation_request(config, model, canary_version, stable_version, at, step_duration,
                                  step_started_at=step_started_at)
    return judge(config, request, request.observe_with(provider), at=at, step_duration=step_duration,
                 intended_share=intended_share, analysed_steps=analysed_steps)


def observation_request(
    config: AnalysisConfig,
    model: str,
    canary_version: str,
    stable_version: str,
    at: datetime,
    step_duration: timedelta,
    *,
    step_started_at: datetime | None = None,
) -> ObservationRequest:
    """What `analyze` asks the provider for (see there): the instant and the windows."""
    at = _aware(at)
    evaluated_at = at - timedelta(seconds=config.evaluation_delay_s)
    step_window_s = step_duration.total_seconds()
    if step_started_at is not None:
        # Never reach back into the previous step, even for a window too short to hold much:
        # its counts were served at another share. A short window only holds too few requests.
        since_start = (evaluated_at - _aware(step_started_at)).total_seconds()
        step_window_s = min(step_window_s, since_start)
    step_window_s = float(max(1, round(step_window_s)))
    burn_windows = scaled_burn_windows(step_duration, config.burn_policies, config.min_window_s)
    windows = {w for pair in burn_windows for w in (pair.long_s, pair.short_s)} | {step_window_s}
    return ObservationRequest(model, canary_version, stable_version, evaluated_at, tuple(sorted(windows)),
                              step_window_s)


def judge(
    config: AnalysisConfig,
    request: ObservationRequest,
    observation: Observation,
    *,
    at: datetime,
    step_duration: timedelta,
    intended_share: float | None = None,
    analysed_steps: int = 1,
) -> AnalysisReport:
    """The checks of `analyze` run on the observation `request` got, however it was read."""
    test_alpha = config.alpha_per_test / max(1, analysed_steps)
    at = _aware(at)
    model, canary_version, stable_version = request.model, request.canary_version, request.stable_version
    step_window_s = request.latency_window_s
    burn_windows = scaled_burn_windows(step_duration, config.burn_policies, config.min_window_s)
    canary_step, stable_step = observation.canary.step, observation.stable.step
    share = _canary_share(canary_step, stable_step)
    ran = {
        BURN_RATE: lambda: check_burn_rate(config.slo_target, burn_windows, observation.canary.counts,
                                           config.min_requests),
        ERRORS: lambda: check_canary_errors(
            canary_step.errors if canary_step else None,
            stable_step.errors if stable_step else None,
            share,
            canary_step.requests if canary_step else None,
            alpha=test_alpha,
            min_requests=config.min_requests,
            pass_at_or_below_bayes_factor=config.pass_at_or_below_bayes_factor,
        ),
        LATENCY: lambda: check_latency(
            canary_step.latency_buckets if canary_step else None,
            stable_step.latency_buckets if stable_step else None,
            share,
            threshold_ms=config.latency_threshold_ms,
            alpha=test_alpha,
            min_requests=config.min_requests,
            pass_at_or_below_bayes_factor=config.pass_at_or_below_bayes_factor,
        ),
        TRAFFIC_SPLIT: lambda: check_traffic_split(
            canary_step.requests if canary_step else None,
            stable_step.requests if stable_step else None,
            intended_share,
            alpha=config.alpha,
            tolerance=config.split_tolerance,
            min_requests=config.min_requests,
        ),
        CLASS_MIX: lambda: check_class_mix(
            canary_step.classes if canary_step else None,
            stable_step.classes if stable_step else None,
            alpha=test_alpha,
            min_requests=config.min_requests,
            prior_share=intended_share,
        ),
    }
    if intended_share is None:  # no router setting to hold the split against (a replay given only versions)
        del ran[TRAFFIC_SPLIT]
    combined = combine([ran[name]() for name in ran if name in config.checks])
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
        intended_share=intended_share,
        observed_share=share,
    )


def intended_canary_share(traffic: RouterTarget, weight: int) -> float:
    """The share of traffic the router sets for a step's weight: replica ratios round
    (25% of 10 pods is 3 pods, 30%); a route's weight is exact."""
    route = build_router(traffic, None).expected(weight)
    pods = route.stable_weight + route.canary_weight
    return route.canary_weight / pods if pods else 0.0


def analyze_tick(
    provider: MetricsProvider,
    config: AnalysisConfig,
    model: str,
    canary_version: str,
    stable_version: str,
    *,
    step: Step,
    traffic: RouterTarget,
    step_started_at: datetime | None,
    now: datetime,
    analysed_steps: int = 1,
) -> AnalysisReport:
    """The one analysis of a controller tick at `now` in `step`: what the controller
    runs, and what a replay and a backtest run to decide the same way.

    Burn windows scale from the step's pause, the tests count from the
    step's start, and the split guard expects the share the router sets for
    the step's weight; ``analysed_steps`` is how many steps of the rollout are
    analysed (`analysed_steps_of`), among which the tests' alpha is spent.
    """
    return analyze(provider, config, model, canary_version, stable_version, now,
                   timedelta(seconds=max(1, step.pause_s)), step_started_at=step_started_at,
                   intended_share=intended_canary_share(traffic, step.weight), analysed_steps=analysed_steps)


@dataclass(frozen=True)
class TickAnalysis:
    """`analyze_tick` in two halves, so a controller can read many rollouts' observations in one batch:
    `request` is what to observe, `judge(observation)` the report `analyze_tick` would give on it."""

    config: AnalysisConfig
    request: ObservationRequest
    at: datetime
    step_duration: timedelta
    intended_share: float
    analysed_steps: int

    @classmethod
    def of(cls, config: AnalysisConfig, model: str, canary_version: str, stable_version: str, *, step: Step,
           traffic: RouterTarget, step_started_at: datetime | None, now: datetime,
           analysed_steps: int = 1) -> "TickAnalysis":
        step_duration = timedelta(seconds=max(1, step.pause_s))
        request = observation_request(config, model, canary_version, stable_version, now, step_duration,
                                      step_started_at=step_started_at)
        return cls(config, request, now, step_duration, intended_canary_share(traffic, step.weight),
                   analysed_steps)

    def judge(self, observation: Observation) -> AnalysisReport:
        return judge(self.config, self.request, observation, at=self.at, step_duration=self.step_duration,
                     intended_share=self.intended_share, analysed_steps=self.analysed_steps)


def analysed_steps_of(steps) -> int:
    """How many of a rollout's steps run the analysis (the 100% step never does)."""
    return max(1, sum(1 for s in steps if s.analysis and not s.promotes))


def _canary_share(canary: ArmWindow | None, stable: ArmWindow | None) -> float | None:
    # The share of requests actually served, not the weight asked for: replica
    # ratios only approximate weights, and H0 of the error split needs the truth.
    if canary is None or stable is None or canary.requests + stable.requests <= 0:
        return None
    return canary.requests / (canary.requests + stable.requests)


def _aware(at: datetime) -> datetime:
    # A naive datetime is read as UTC rather than the host's zone, so a replay
    # on a laptop asks Prometheus for the same instant the controller did.
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
