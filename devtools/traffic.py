"""A bounded traffic generator for loopback model servers: splits prediction
requests between a stable and a canary server by a canary weight it reads from
a callable (so a demo or an end-to-end test can follow the split a controller
set in the Kubernetes emulator), and counts the answers by arm and status.
"""

from __future__ import annotations

import collections
import http.client
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

STABLE, CANARY = "stable", "canary"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class TrafficReport:
    """What was sent: answers by (arm, HTTP status; 0 for a connection failure)."""

    sent: int
    elapsed_s: float
    answers: dict[tuple[str, int], int]
    weight_read_errors: int

    def count(self, arm: str | None = None, status: int | None = None) -> int:
        """Answers of one arm and/or status (None: any)."""
        return sum(n for (a, s), n in self.answers.items()
                   if (arm is None or a == arm) and (status is None or s == status))


class TrafficGenerator:
    """Sends up to ``max_requests`` predictions at ``rate_per_s`` for at most
    ``max_seconds``, from ``workers`` threads with keep-alive connections.

    Each request goes to the canary with probability ``canary_weight()``
    (0..1, re-read at most every ``weight_refresh_s``; if reading fails the
    last value stands and the failure is counted). Request ``i`` carries row
    ``i % len(inputs)`` of ``inputs`` as a batch of one. Seeded: the same seed
    and weights give the same split.
    """

    def __init__(self, stable_url: str, canary_url: str, canary_weight: Callable[[], float],
                 inputs: np.ndarray | Sequence, *, rate_per_s: float = 50.0, max_requests: int = 1000,
                 max_seconds: float = 30.0, workers: int = 4, seed: int = 0, weight_refresh_s: float = 0.25,
                 timeout_s: float = 10.0):
        if not (0 < rate_per_s and 0 < max_requests <= 1_000_000 and 0 < max_seconds <= 600):
            raise ValueError("traffic must be bounded: 0 < rate, 0 < max_requests <= 1e6, 0 < max_seconds <= 600")
        self.urls = {STABLE: _loopback(stable_url), CANARY: _loopback(canary_url)}
        self.canary_weight = canary_weight
        inputs = np.asarray(inputs, dtype=np.float32)
        # Serialised once: the generator should spend its CPU on sending, not on JSON.
        self._bodies = [json.dumps({"inputs": row[None].tolist()}).encode() for row in inputs]
        self.rate_per_s, self.max_requests, self.max_seconds = rate_per_s, max_requests, max_seconds
        self.workers, self.seed, self.weight_refresh_s, self.timeout_s = workers, seed, weight_refresh_s, timeout_s
        self._lock = threading.Lock()
        self._next = 0
        self._answers: collections.Counter = collections.Counter()
        self._weight, self._weight_read_at, self._weight_errors = 0.0, -1e9, 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = self._finished = 0.0

    def start(self) -> TrafficGenerator:
        """Start sending in the background."""
        self._read_weight(force=True)
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._work, args=(i,), name=f"traffic-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> TrafficReport:
        """Stop early (or after the bounds), wait for in-flight requests, report."""
        self._stop.set()
        return self.wait()

    def wait(self) -> TrafficReport:
        """Wait until a bound is reached; the report."""
        for thread in self._threads:
            thread.join(self.max_seconds + self.timeout_s + 5)
        return self.report()

    def report(self) -> TrafficReport:
        """Counts so far (the generator may still be running)."""
        with self._lock:
            end = self._finished or time.monotonic()
            return TrafficReport(sent=sum(self._answers.values()), elapsed_s=end - self._started,
                                 answers=dict(self._answers), weight_read_errors=self._weight_errors)

    def __enter__(self) -> TrafficGenerator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _read_weight(self, force: bool = False) -> float:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._weight_read_at < self.weight_refresh_s:
                return self._weight
            self._weight_read_at = now  # one reader at a time; the others use the last value
        try:
            weight = min(1.0, max(0.0, float(self.canary_weight())))
        except Exception:  # a flaky source (the emulator's fault injection) must not stop traffic
            with self._lock:
                self._weight_errors += 1
                return self._weight
        with self._lock:
            self._weight = weight
        return weight

    def _claim(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or self._next >= self.max_requests:
                return None
            if time.monotonic() - self._started >= self.max_seconds:
                return None
            index, self._next = self._next, self._next + 1
            return index

    def _work(self, worker: int) -> None:
        rng = random.Random(self.seed * 1009 + worker)
        connections: dict[str, http.client.HTTPConnection] = {}
        try:
            while (index := self._claim()) is not None:
                due = self._started + index / self.rate_per_s
                if (delay := due - time.monotonic()) > 0 and self._stop.wait(delay):
                    break
                arm = CANARY if rng.random() < self._read_weight() else STABLE
                status = self._send(connections, arm, self._bodies[index % len(self._bodies)])
                with self._lock:
                    self._answers[(arm, status)] += 1
        finally:
            for connection in connections.values():
                connection.close()
            with self._lock:
                self._finished = max(self._finished, time.monotonic())

    def _send(self, connections: dict, arm: str, body: bytes) -> int:
        host, port = self.urls[arm]
        for _ in range(2):
            reused = arm in connections
            connection = connections.get(arm) or http.client.HTTPConnection(host, port, timeout=self.timeout_s)
            connections[arm] = connection
            try:
                connection.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connections.pop(arm)
                return response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                connections.pop(arm, None)
                if not reused:  # only a kept-alive connection the server closed earns a retry
                    return 0
        return 0


def _loopback(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or parsed.hostname not in _LOOPBACK or parsed.port is None:
        raise ValueError(f"traffic goes to loopback servers only (http://127.0.0.1:PORT), not {url!r}")
    return parsed.hostname, parsed.port
