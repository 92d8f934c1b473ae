"""The series the rollout analysis reads, exported per model, version and
track: `mlcp_model_requests_total{code}`, the latency histogram
`mlcp_model_request_duration_seconds` and `mlcp_model_predictions_total{class}`
(each predicted row, by its arg-max class). The names are a contract with
`rollouts.metrics.PromQLTemplates`.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Millisecond-scale inference: fine buckets from 1 ms, one at the analysis'
# default 300 ms p95 threshold, and a tail to 10 s for injected or real stalls.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                     0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# Codes the prediction endpoint answers with. Their series exist from start-up
# at 0, because Prometheus' increase() cannot count the first increment of a
# series that appears already at 1: a canary's first errors would be lost.
PREDICT_CODES = ("200", "400", "413", "500")


class ServingMetrics:
    """A private registry with the request counter, latency histogram and an
    info gauge naming the digest being served."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: str, version: str, track: str, digest: str, n_classes: int | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.labels = {"model": model, "version": str(version), "track": track}
        self._requests = Counter("mlcp_model_requests", "Prediction requests answered, by HTTP status code.",
                                 ["model", "version", "track", "code"], registry=self.registry)
        self._latency = Histogram("mlcp_model_request_duration_seconds",
                                  "Time from reading a prediction request to answering it.",
                                  ["model", "version", "track"], buckets=LATENCY_BUCKETS_S,
                                  registry=self.registry)
        info = Gauge("mlcp_model_info", "The model version this server serves (value 1).",
                     ["model", "version", "track", "digest"], registry=self.registry)
        info.labels(**self.labels, digest=f"sha256:{digest}").set(1)
        self._predictions = Counter("mlcp_model_predictions", "Predicted rows, by the arg-max class answered.",
                                    ["model", "version", "track", "class"], registry=self.registry)
        for code in PREDICT_CODES:
            self._requests.labels(**self.labels, code=code)
        # Every class from start-up at 0, for the same reason as the codes; and so the
        # class-mix test's set of classes is fixed before any prediction (its guarantee needs that).
        for k in range(n_classes or 0):
            self._predictions.labels(**self.labels, **{"class": str(k)})
        self._latency_child = self._latency.labels(**self.labels)

    def observe(self, code: int, duration_s: float) -> None:
        """Count one answered prediction request and its latency."""
        self._requests.labels(**self.labels, code=str(code)).inc()
        self._latency_child.observe(duration_s)

    def observe_predictions(self, classes) -> None:
        """Count each predicted row by its class (``classes`` as `OnnxModel.predict` answers them)."""
        for k in _flat(classes):
            self._predictions.labels(**self.labels, **{"class": str(k)}).inc()

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def _flat(classes):
    if not isinstance(classes, list):
        yield classes
        return
    for item in classes:
        yield from _flat(item)
