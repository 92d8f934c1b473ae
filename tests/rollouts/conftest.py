"""Prometheus for the rollout tests: one real server per session, preloaded
with recorded traffic of two rollouts at fixed past instants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from devtools.embedded.prometheus import TrafficPhase, arm_traffic, prometheus_server

RECORDED_AT = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
FAST = {0.05: 0.5, 0.1: 0.9, 0.25: 0.99, 0.5: 1.0, 1.0: 1.0, float("inf"): 1.0}
SLOW = {0.05: 0.1, 0.1: 0.3, 0.25: 0.6, 0.5: 0.9, 1.0: 0.99, float("inf"): 1.0}


@dataclass(frozen=True)
class RecordedRollout:
    """Traffic of a canary and its stable, as Prometheus scraped it every 15 s."""

    model: str
    canary_version: str
    stable_version: str
    start: datetime
    canary: tuple[TrafficPhase, ...]
    stable: tuple[TrafficPhase, ...]

    def samples(self):
        return arm_traffic(self.model, self.canary_version, "canary", self.start, self.canary) + arm_traffic(
            self.model, self.stable_version, "stable", self.start, self.stable
        )


def _minutes(start: datetime, n: float) -> datetime:
    return start + timedelta(minutes=n)


# A canary at 10 rps failing 2% of requests and slower, beside a stable at
# 90 rps that never fails: steady for 20 minutes.
SPLIT = RecordedRollout(
    model="resnet-split", canary_version="2", stable_version="1", start=RECORDED_AT,
    canary=(TrafficPhase(_minutes(RECORDED_AT, 20), 10.0, 0.02, SLOW),),
    stable=(TrafficPhase(_minutes(RECORDED_AT, 20), 90.0, 0.0, FAST),),
)

# An incident: for 20 minutes the canary behaves exactly like stable
# (0.05% errors), then starts failing 10% of requests and slows down.
INCIDENT_START = _minutes(RECORDED_AT, 180)
INCIDENT = RecordedRollout(
    model="fraud-scorer", canary_version="8", stable_version="7", start=_minutes(INCIDENT_START, -20),
    canary=(TrafficPhase(INCIDENT_START, 10.0, 0.0005, FAST), TrafficPhase(_minutes(INCIDENT_START, 10), 10.0, 0.10, SLOW)),
    stable=(TrafficPhase(_minutes(INCIDENT_START, 10), 90.0, 0.0005, FAST),),
)


@pytest.fixture(scope="session")
def prometheus():
    """A real Prometheus on loopback holding SPLIT and INCIDENT; scrapes every 1 s."""
    with prometheus_server(backfill=SPLIT.samples() + INCIDENT.samples(), scrape_interval_s=1.0) as server:
        yield server


@pytest.fixture
def split_rollout(prometheus) -> RecordedRollout:
    """A bad, slow canary beside a healthy stable (recorded in `prometheus`)."""
    return SPLIT


@pytest.fixture
def recorded_incident(prometheus) -> RecordedRollout:
    """A canary healthy until `INCIDENT_START`, failing after (recorded in `prometheus`)."""
    return INCIDENT
