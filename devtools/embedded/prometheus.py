"""A real `prometheus` binary on loopback for tests, fed deterministic series.

Recorded traffic is written as OpenMetrics text and turned into TSDB blocks
with `promtool tsdb create-blocks-from openmetrics` before the server starts,
so every sample sits at a chosen timestamp and queries at a fixed past instant
always see the same data. Live targets can also be scraped every second.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from devtools.embedded.ports import free_port
from devtools.processes import stop_process

REQUESTS_METRIC = "mlcp_model_requests_total"
LATENCY_BUCKET_METRIC = "mlcp_model_request_duration_seconds_bucket"


@dataclass(frozen=True)
class Sample:
    """One value of one series at one instant (Unix seconds)."""

    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp: float


@dataclass(frozen=True)
class TrafficPhase:
    """Steady traffic of one arm until ``until``.

    ``latency_cdf`` maps bucket upper bounds (seconds, ending with +Inf) to the
    fraction of requests at or under them.
    """

    until: datetime
    requests_per_s: float
    error_ratio: float
    latency_cdf: Mapping[float, float] = field(
        default_factory=lambda: {0.05: 0.5, 0.1: 0.9, 0.25: 0.99, math.inf: 1.0}
    )


def arm_traffic(
    model: str,
    version: str,
    track: str,
    start: datetime,
    phases: Sequence[TrafficPhase],
    scrape_interval_s: float = 15.0,
) -> list[Sample]:
    """Counter and histogram samples for one arm of a model, as a scrape would
    have recorded them: 200s and 500s by ``code``, cumulative latency buckets.

    A code or bucket that never counts anything gets no series, as with a real
    client library that creates a labelled child on first use.
    """
    base = {"model": model, "version": version, "track": track}
    t, end = start.timestamp(), phases[-1].until.timestamp()
    ok = failed = 0.0
    buckets: dict[float, float] = {}
    samples: list[Sample] = []
    previous_t = t
    while t <= end + 1e-9:
        phase = next((p for p in phases if t <= p.until.timestamp() + 1e-9), phases[-1])
        served = phase.requests_per_s * (t - previous_t)
        ok += served * (1.0 - phase.error_ratio)
        failed += served * phase.error_ratio
        for le, fraction in phase.latency_cdf.items():
            buckets[le] = buckets.get(le, 0.0) + served * fraction
        for code, value in (("200", ok), ("500", failed)):
            if value > 0 or code == "200":
                samples.append(_sample(REQUESTS_METRIC, {**base, "code": code}, value, t))
        for le, value in buckets.items():
            samples.append(_sample(LATENCY_BUCKET_METRIC, {**base, "le": _format_le(le)}, value, t))
        previous_t, t = t, t + scrape_interval_s
    return samples


def to_openmetrics(samples: Iterable[Sample]) -> str:
    """OpenMetrics text for promtool: each series' samples together, in time order."""
    by_series: dict[tuple, list[Sample]] = {}
    for sample in samples:
        by_series.setdefault((sample.metric, sample.labels), []).append(sample)
    lines = []
    for (metric, labels), series in sorted(by_series.items()):
        label_text = ",".join(f'{k}="{v}"' for k, v in labels)
        for sample in sorted(series, key=lambda s: s.timestamp):
            lines.append(f"{metric}{{{label_text}}} {sample.value!r} {sample.timestamp:.3f}")
    return "\n".join(lines + ["# EOF", ""])


class PrometheusServer:
    """A `prometheus` process with its own config and TSDB under ``root``."""

    def __init__(self, root: Path, *, scrape_interval_s: float = 1.0):
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scrape_interval_s = scrape_interval_s
        self._config = self.root / "prometheus.json"
        self._data = self.root / "data"
        self._log = self.root / "prometheus.log"
        self._process: subprocess.Popen | None = None

    def backfill(self, samples: Iterable[Sample]) -> None:
        """Write samples as TSDB blocks; only before `start`, which loads them."""
        if self._process is not None:
            raise RuntimeError("backfill before start: a running Prometheus does not load new blocks")
        source = self.root / f"backfill-{time.monotonic_ns()}.om"
        source.write_text(to_openmetrics(samples))
        self._data.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(self._data)],
            check=True, capture_output=True, text=True,
        )

    def start(self, scrape_targets: Sequence[str] = (), timeout_s: float = 30.0) -> None:
        """Start on a free loopback port and wait until /-/ready answers."""
        self._write_config(scrape_targets)
        self._process = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={self._config}",
                f"--storage.tsdb.path={self._data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # Retention counts back from the newest block; recorded data
                # sits at fixed past dates and must never age out mid-session.
                "--storage.tsdb.retention.time=10y",
                "--web.enable-lifecycle",
            ],
            stdout=self._log.open("wb"), stderr=subprocess.STDOUT,
        )
        self._wait_ready(timeout_s)

    def scrape(self, targets: Sequence[str]) -> None:
        """Scrape these ``host:port`` targets (path /metrics) from now on."""
        self._write_config(targets)
        self._post("/-/reload")

    def query(self, promql: str, at: datetime | None = None) -> list[dict]:
        """The raw result list of an instant query (at now by default)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["data"]["result"]

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers)."""
        stop_process(self._process)
        self._process = None

    def _write_config(self, targets: Sequence[str]) -> None:
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {"job_name": "targets", "static_configs": [{"targets": list(targets)}]}
            ] if targets else [],
        }
        self._config.write_text(json.dumps(config))  # JSON is valid YAML

    def _post(self, path: str) -> None:
        request = urllib.request.Request(f"{self.url}{path}", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._process.returncode}:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prometheus not ready within {timeout_s}s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-20:])


@contextmanager
def prometheus_server(
    backfill: Iterable[Sample] = (),
    scrape_targets: Sequence[str] = (),
    scrape_interval_s: float = 1.0,
):
    """A started `PrometheusServer` in a throwaway folder, stopped and deleted after."""
    root = Path(tempfile.mkdtemp(prefix="mlcp-prometheus-"))
    server = PrometheusServer(root, scrape_interval_s=scrape_interval_s)
    try:
        samples = list(backfill)
        if samples:
            server.backfill(samples)
        server.start(scrape_targets)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install Debian's 'prometheus' package (make test does)")
    return path


def _sample(metric: str, labels: dict[str, str], value: float, timestamp: float) -> Sample:
    return Sample(metric, tuple(sorted(labels.items())), value, timestamp)


def _format_le(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(float(le))
