"""A rollout's plan as plain values: its steps and what the analysis judges
against (where its traffic goes is a `k8s.RouterTarget`). Parsed and validated once from the JSON stored on the
`Rollout`; pure functions, so the controller's `plan` can use them without I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

from controlplane.errors import InvalidInput
from rollouts.analysis import ALL_CHECKS, AnalysisConfig

DEFAULT_WEIGHTS = (10, 25, 50, 100)
DEFAULT_PAUSE_S = 300
# How long a step may hold (inconclusive analysis, canary not ready, Prometheus
# down) beyond its pause before the rollout is aborted; at least this much.
MIN_HOLD_BUDGET_S = 600
# Settings of the latency ratio-and-gap threshold the sequential latency test
# replaced: still read from rollouts stored before, and ignored.
RETIRED_SETTINGS = {"max_latency_ratio", "min_latency_gap_ms"}


@dataclass(frozen=True)
class Step:
    """Send `weight`% of traffic to the canary for at least `pause_s`, judged by analysis.

    The last step is always 100%: reaching it is the promotion itself.
    """

    weight: int
    pause_s: int = DEFAULT_PAUSE_S
    analysis: bool = True

    @property
    def promotes(self) -> bool:
        return self.weight == 100


def parse_steps(raw) -> tuple[Step, ...]:
    """Steps from `[10, 25, ...]` or `[{"weight": 10, "pause_s": 300, "analysis": true}, ...]`."""
    if raw in (None, "", []):
        raw = list(DEFAULT_WEIGHTS)
    if not isinstance(raw, (list, tuple)):
        raise InvalidInput("steps must be a list of weights or of {weight, pause_s, analysis}",
                           code="invalid_strategy")
    steps = []
    for item in raw:
        if isinstance(item, dict):
            unknown = set(item) - {"weight", "pause_s", "analysis"}
            if unknown:
                raise InvalidInput(f"unknown step fields {sorted(unknown)}", code="invalid_strategy")
            weight, pause_s, analysis = item.get("weight"), item.get("pause_s", DEFAULT_PAUSE_S), \
                item.get("analysis", True)
        else:
            weight, pause_s, analysis = item, DEFAULT_PAUSE_S, True
        if not _whole(weight) or not 1 <= weight <= 100:
            raise InvalidInput(f"a step weight is a whole percent 1-100, not {weight!r}", code="invalid_strategy")
        if not _whole(pause_s) or pause_s < 0:
            raise InvalidInput(f"pause_s is whole seconds >= 0, not {pause_s!r}", code="invalid_strategy")
        steps.append(Step(int(weight), int(pause_s), bool(analysis)))
    if steps[-1].weight != 100:
        steps.append(Step(100, 0, False))
    weights = [s.weight for s in steps]
    if weights != sorted(set(weights)):
        raise InvalidInput(f"step weights must strictly increase, not {weights}", code="invalid_strategy")
    # The 100% step is the promotion: no pause, no analysis (there is no stable left to compare with).
    steps[-1] = Step(100, 0, False)
    return tuple(steps)


def steps_to_json(steps: tuple[Step, ...]) -> list[dict]:
    return [asdict(s) for s in steps]


@dataclass(frozen=True)
class AnalysisSettings:
    """What each step's analysis judges against, and how long a step may hold."""

    config: AnalysisConfig
    hold_budget_s: int | None = None  # None: max(MIN_HOLD_BUDGET_S, 2 x pause)

    @classmethod
    def from_json(cls, raw: dict | None, slo: dict | None = None) -> "AnalysisSettings":
        raw, slo = dict(raw or {}), dict(slo or {})
        allowed = {"slo_target", "latency_threshold_ms", "min_requests", "alpha", "min_window_s", "hold_budget_s",
                   "checks", "split_tolerance", "evaluation_delay_s"}
        unknown = set(raw) - allowed - RETIRED_SETTINGS
        if unknown:
            raise InvalidInput(f"unknown analysis settings {sorted(unknown)}", code="invalid_analysis")
        for retired in RETIRED_SETTINGS:
            raw.pop(retired, None)
        hold = raw.pop("hold_budget_s", None)
        if "checks" in raw:
            if not isinstance(raw["checks"], (list, tuple)) or not all(isinstance(c, str) for c in raw["checks"]):
                raise InvalidInput(f"checks is a list of check names from {list(ALL_CHECKS)}",
                                   code="invalid_analysis")
            raw["checks"] = tuple(dict.fromkeys(raw["checks"]))
        defaults = {"slo_target": slo.get("availability", 0.999),
                    "latency_threshold_ms": slo.get("latency_p95_ms", AnalysisConfig.latency_threshold_ms)}
        try:
            config = AnalysisConfig(**{**defaults, **raw})
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid analysis settings: {exc}", code="invalid_analysis") from None
        if not 0 < config.slo_target < 1 or not 0 < config.alpha < 1:
            raise InvalidInput("slo_target and alpha must lie between 0 and 1", code="invalid_analysis")
        if not 0 <= config.split_tolerance < 1 or config.evaluation_delay_s < 0:
            raise InvalidInput("split_tolerance lies in [0, 1) and evaluation_delay_s is >= 0",
                               code="invalid_analysis")
        if hold is not None and (not _whole(hold) or hold < 0):
            raise InvalidInput("hold_budget_s is whole seconds >= 0", code="invalid_analysis")
        return cls(config, hold)

    def to_json(self) -> dict:
        c = self.config
        out = {"slo_target": c.slo_target, "latency_threshold_ms": c.latency_threshold_ms,
               "min_requests": c.min_requests, "alpha": c.alpha, "min_window_s": c.min_window_s,
               "checks": list(c.checks), "split_tolerance": c.split_tolerance,
               "evaluation_delay_s": c.evaluation_delay_s}
        if self.hold_budget_s is not None:
            out["hold_budget_s"] = self.hold_budget_s
        return out

    def step_deadline(self, step: Step) -> timedelta:
        """How long after a step starts it must have passed."""
        hold = self.hold_budget_s if self.hold_budget_s is not None else max(MIN_HOLD_BUDGET_S, 2 * step.pause_s)
        return timedelta(seconds=step.pause_s + hold)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
