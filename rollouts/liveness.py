"""Is any rollout controller acting? Decided from the heartbeat it leaves on the lease row.

The controller writes the heartbeat (`rollouts.controller.begin_tick`,
`finish_tick`); `assess` is the pure rule, tested with plain values, and
`controller_liveness` reads the row (one query) for the API, the UI and the CLI.
The tick histogram kept in the same row is `observe_tick`'s arithmetic.

A pod's own liveness (its Kubernetes probe, `manage.py controllerhealth`) is
another question: is this process's loop turning, leader or standby? The loop
answers it in a local file (`touch_local_heartbeat`), so the probe needs no
database and a database outage does not restart every controller pod.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

# Bounds of the tick-duration histogram (`mlcp_controller_tick_seconds`). A tick
# waits for its rollouts at most the rollout timeout (`runcontroller`: the interval, 10 s by default).
TICK_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class Heartbeat:
    """What the lease row says about the last tick, as plain values."""

    holder: str
    tick_started_at: datetime | None = None
    tick_finished_at: datetime | None = None

    @property
    def last_tick_at(self) -> datetime | None:
        """The latest sign of work: a tick that started counts, so a slow tick is not taken for a dead one."""
        seen = [at for at in (self.tick_started_at, self.tick_finished_at) if at is not None]
        return max(seen) if seen else None


@dataclass(frozen=True)
class Liveness:
    alive: bool
    holder: str
    last_tick_at: datetime | None
    stale_for_s: float | None  # seconds since the last tick; None when no controller ever ticked

    def as_dict(self) -> dict:
        return {"alive": self.alive, "holder": self.holder, "last_tick_at": self.last_tick_at,
                "stale_for_s": self.stale_for_s}

    @property
    def warning(self) -> str:
        """What people are told on an active rollout when no controller acts; '' when one does."""
        if self.alive:
            return ""
        return warning_text(self.stale_for_s)


def warning_text(stale_for_s: float | None) -> str:
    """The one sentence the UI, the API's readers and the CLI show (the CLI builds it from the API's numbers)."""
    if stale_for_s is None:
        return "No controller has ever acted — this rollout will not move"
    return f"No controller has acted for {stale_for_s:.0f} s — this rollout will not move"


def assess(heartbeat: Heartbeat | None, now: datetime, stale_after_s: float) -> Liveness:
    """Alive when the last tick started or finished at most `stale_after_s` before `now`. No I/O."""
    if heartbeat is None or heartbeat.last_tick_at is None:
        return Liveness(False, heartbeat.holder if heartbeat else "", None, None)
    # A controller's clock a little ahead of this one's is not "negative staleness".
    stale_for_s = max(0.0, round((now - heartbeat.last_tick_at).total_seconds(), 1))
    return Liveness(stale_for_s <= stale_after_s, heartbeat.holder, heartbeat.last_tick_at, stale_for_s)


def controller_liveness(now: datetime | None = None) -> Liveness:
    """`assess` of the stored heartbeat against MLCP_CONTROLLER_STALE_S."""
    from rollouts.models import ControllerLease

    row = ControllerLease.objects.values("holder", "tick_started_at", "tick_finished_at").order_by("pk").first()
    heartbeat = Heartbeat(**row) if row else None
    return assess(heartbeat, now or timezone.now(), settings.MLCP_CONTROLLER_STALE_S)


def observe_tick(buckets: list[int] | None, duration_s: float) -> list[int]:
    """Cumulative per-bound counts after one more tick of `duration_s` (a histogram's buckets).

    Counts kept under another set of bounds start again from zero: a bucket
    whose bound changed cannot be carried over.
    """
    counts = list(buckets or [])
    if len(counts) != len(TICK_BUCKETS_S) or not all(isinstance(c, int) for c in counts):
        counts = [0] * len(TICK_BUCKETS_S)
    return [count + (duration_s <= bound) for count, bound in zip(counts, TICK_BUCKETS_S)]


# ------------------------------------------------------- this pod's loop

def touch_local_heartbeat(path: str, *, holder: str, leading: bool, at: float) -> None:
    """Say in `path` that this process's loop turned at `at` (epoch seconds); atomic, so a probe never reads half."""
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as fh:
        json.dump({"at": at, "holder": holder, "leading": leading}, fh)
    os.replace(partial, path)


def local_heartbeat_age(path: str, now: float) -> float | None:
    """Seconds since the loop last turned, by `path`; None when it never wrote one (or it is unreadable)."""
    try:
        with open(path, encoding="utf-8") as fh:
            at = float(json.load(fh)["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return max(0.0, now - at)
