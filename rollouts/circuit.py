"""A circuit breaker in front of the metrics provider, so a hung Prometheus costs one timeout, not one per rollout.

After `threshold` failures in a row (`MetricsUnavailable`: a timeout, a refused
connection, a 5xx) the circuit opens: for `cooldown_s` every analysis fails at
once with `MetricsUnavailable`, which `plan()` reads as "no analysis" and holds
(and, past a step's deadline, aborts). Then one call is let through; its success
closes the circuit, its failure opens it again. The analysis lane's threads are
so freed in seconds instead of each waiting out the provider's own timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rollouts.metrics import MetricsUnavailable


class MetricsCircuit:
    """Wraps a metrics provider's `observe`; everything else passes through."""

    def __init__(self, provider, *, threshold: int = 3, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.provider = provider
        self.threshold, self.cooldown_s, self.clock = threshold, cooldown_s, clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None
        self._trial = False

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open_until is not None and self.clock() < self._open_until

    def observe(self, *args, **kwargs):
        self._admit()
        try:
            result = self.provider.observe(*args, **kwargs)
        except MetricsUnavailable:
            self._failed()
            raise
        self._succeeded()
        return result

    def observe_many(self, requests):
        """The provider's batched read behind the same breaker: open, every request fails at once; a batch
        that failed entirely counts as one failure, one that got any answer closes the circuit."""
        try:
            self._admit()
        except MetricsUnavailable as exc:
            return {request: exc for request in requests}
        results = self.provider.observe_many(requests)
        if results and all(isinstance(r, MetricsUnavailable) for r in results.values()):
            self._failed()
        else:
            self._succeeded()
        return results

    @property
    def batches(self) -> bool:
        """Whether the provider behind reads many rollouts in one batch."""
        return callable(getattr(self.provider, "observe_many", None))

    def _admit(self) -> None:
        with self._lock:
            if self._open_until is None:
                return
            if self.clock() < self._open_until or self._trial:
                raise MetricsUnavailable(
                    f"Prometheus failed {self._failures} times in a row; not asked again before "
                    f"{max(0.0, self._open_until - self.clock()):.0f} s", code="metrics_circuit_open")
            self._trial = True  # half-open: this one call decides

    def _failed(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial = False
            if self._failures >= self.threshold:
                self._open_until = self.clock() + self.cooldown_s

    def _succeeded(self) -> None:
        with self._lock:
            self._failures, self._open_until, self._trial = 0, None, False

    def __getattr__(self, name):
        return getattr(self.provider, name)
