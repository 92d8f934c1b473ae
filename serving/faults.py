"""A fault switch for demos and tests: fail a share of requests, slow them, or
never answer one class (a silent model regression: errors and latency stay normal).

It exists so that a rollback can be shown and measured on a real server; a
production deployment leaves it off (both values 0, the default).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class FaultSettings:
    """Share of prediction requests answered 500 (0..1), delay added to each, and a
    class never answered (None: off)."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    never_class: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be within [0, 1], got {self.error_rate}")
        if not 0.0 <= self.latency_ms <= 60_000.0:
            raise ValueError(f"latency_ms must be within [0, 60000], got {self.latency_ms}")
        if self.never_class is not None and (isinstance(self.never_class, bool) or not isinstance(
                self.never_class, int) or self.never_class < 0):
            raise ValueError(f"never_class must be a class index >= 0 or null, got {self.never_class!r}")


class FaultSwitch:
    """Thread-safe current `FaultSettings` and a seeded draw per request, so a
    test with a seed sees the same sequence of failures on every run."""

    def __init__(self, settings: FaultSettings | None = None, seed: int | None = None):
        self._settings = settings or FaultSettings()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def settings(self) -> FaultSettings:
        """The settings in force now."""
        return self._settings

    def set(self, settings: FaultSettings) -> FaultSettings:
        """Replace the settings; returns the previous ones."""
        with self._lock:
            previous, self._settings = self._settings, settings
        return previous

    def draw(self) -> tuple[bool, float]:
        """For one request: (fail it?, seconds to delay it)."""
        with self._lock:
            settings = self._settings
            fail = settings.error_rate > 0.0 and self._random.random() < settings.error_rate
        return fail, settings.latency_ms / 1000.0
