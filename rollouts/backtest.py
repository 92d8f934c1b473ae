"""Backtest a rollout on recorded Prometheus history: walk the controller's own
`plan()` tick by tick, each tick's analysis computed by the one function the
controller runs (`rollouts.metrics.analyze_tick`), so a backtest decides what
the controller would have decided, at the same ticks.

What it assumes where the controller would look at the cluster: the canary
is ready and the route is what the step sets (a backtest asks "what would
the analysis have done", not "would the cluster have kept up"). The first
step starts at the backtest's start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from k8s import RouterTarget, build_router
from rollouts.analysis.result import to_json_value
from rollouts.choices import Phase
from rollouts.controller import AnalysisOutcome, Do, Observed, RolloutState, plan
from rollouts.metrics import MetricsProvider, analysed_steps_of, analyze_tick
from rollouts.strategy import AnalysisSettings, Step

#: What a backtest ends with, by the action that ended it.
OUTCOMES = {Do.BEGIN_PROMOTION: "promoted", Do.ROLL_BACK: "rolled_back", Do.ABORT: "aborted"}


@dataclass(frozen=True)
class BacktestTick:
    """One tick: the step it ran in, each check's verdict, the combined verdict and the decision."""

    at: datetime
    step: int
    weight: int
    verdict: str | None
    checks: dict[str, str]
    do: str
    reason: str
    observed_share: float | None = None
    intended_share: float | None = None


@dataclass(frozen=True)
class Backtest:
    """Every tick, and when (if at all) the rollout would have promoted, rolled back or aborted."""

    model: str
    canary_version: str
    stable_version: str
    ticks: tuple[BacktestTick, ...]
    outcome: str = "undecided"
    decided_at: datetime | None = None
    reason: str = ""
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return to_json_value({
            "model": self.model, "canary_version": self.canary_version, "stable_version": self.stable_version,
            "steps": [{"weight": s.weight, "pause_s": s.pause_s, "analysis": s.analysis} for s in self.steps],
            "outcome": self.outcome, "decided_at": self.decided_at, "reason": self.reason,
            "ticks": [vars(t) for t in self.ticks],
        })


def tick_instants(start: datetime, until: datetime, interval_s: float) -> list[datetime]:
    """The controller's ticks from `start` to `until`, every `interval_s` seconds."""
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    out, at = [], start
    while at <= until:
        out.append(at)
        at += timedelta(seconds=interval_s)
    return out


def backtest(provider: MetricsProvider, settings: AnalysisSettings, *, model: str, canary_version: str,
             stable_version: str, steps: tuple[Step, ...], traffic: RouterTarget,
             ticks: Iterable[datetime], started_at: datetime | None = None) -> Backtest:
    """Run `plan()` at each of `ticks` (in order) as the controller would, from step 0
    started at `started_at` (default: the first tick)."""
    ticks = list(ticks)
    if not ticks:
        raise ValueError("a backtest needs at least one tick")
    started_at = started_at or ticks[0]
    router = build_router(traffic, None)
    state = RolloutState(id=0, phase=Phase.PROGRESSING, current_step=0, steps=steps, traffic=traffic,
                         canary_version=canary_version, stable_version=stable_version, step_started_at=started_at,
                         deadline_at=started_at + settings.step_deadline(steps[0]))
    seen: list[BacktestTick] = []
    for now in ticks:
        step = state.step
        analysis, report = None, None
        if step.analysis and not step.promotes:
            report = analyze_tick(provider, settings.config, model, canary_version, stable_version, step=step,
                                  traffic=traffic, step_started_at=state.step_started_at, now=now,
                                  analysed_steps=analysed_steps_of(steps))
            analysis = AnalysisOutcome(report.verdict, report.reason, report.evidence())
        observed = Observed(now, route=router.expected(step.weight), canary_version=canary_version,
                            canary_ready=True, analysis=analysis)
        action = plan(state, observed)
        seen.append(BacktestTick(
            at=now, step=state.current_step, weight=step.weight,
            verdict=analysis.verdict.value if analysis else None,
            checks={c.check: c.verdict.value for c in report.checks} if report else {},
            do=action.do.value, reason=action.reason,
            observed_share=report.observed_share if report else None,
            intended_share=report.intended_share if report else None))
        if action.do in OUTCOMES:
            return Backtest(model, canary_version, stable_version, tuple(seen), OUTCOMES[action.do], now,
                            action.reason, steps)
        if action.do == Do.NEXT_STEP:
            state = replace(state, current_step=action.to_step, step_started_at=now,
                            deadline_at=now + settings.step_deadline(steps[action.to_step]))
    return Backtest(model, canary_version, stable_version, tuple(seen), steps=steps)
