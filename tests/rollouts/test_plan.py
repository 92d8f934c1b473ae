"""`plan()` is a pure function of plain values: the controller's decisions, one by one."""

from datetime import datetime, timedelta, timezone

from k8s import RouterTarget, RouteState, build_router
from rollouts.analysis import Verdict
from rollouts.choices import Phase
from rollouts.controller import AnalysisOutcome, Do, Observed, RolloutState, plan
from rollouts.strategy import parse_steps

T = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
TRAFFIC = RouterTarget.from_json({"namespace": "ml", "deployment": "resnet", "replicas": 10})
ROUTER = build_router(TRAFFIC, None)
STEPS = parse_steps([{"weight": w, "pause_s": 300} for w in (10, 25, 50)])


def state(phase=Phase.PROGRESSING, step=0, started=T, deadline=T + timedelta(minutes=15), steps=STEPS):
    return RolloutState(id=1, phase=phase, current_step=step, steps=steps, traffic=TRAFFIC, canary_version="2",
                        stable_version="1", step_started_at=started, deadline_at=deadline)


def seen(now, step=0, verdict=Verdict.PASS, ready=True, **kw):
    analysis = AnalysisOutcome(verdict, f"checks say {verdict}", {}) if verdict else None
    return Observed(now, route=ROUTER.expected(STEPS[step].weight), canary_version="2", canary_ready=ready,
                    analysis=analysis, **kw)


def test_pending_starts_the_first_step():
    assert plan(state(Phase.PENDING, started=None), Observed(T)).do == Do.START


def test_pending_with_only_a_100_percent_step_goes_straight_to_promotion():
    assert plan(state(Phase.PENDING, steps=parse_steps([100])), Observed(T)).do == Do.BEGIN_PROMOTION


def test_missing_or_drifted_canary_is_ensured_before_anything_else():
    assert plan(state(), Observed(T, route=RouteState(10, 0), canary_version=None)).do == Do.ENSURE_STEP
    drifted = Observed(T, route=RouteState(8, 2), canary_version="2", canary_ready=True)
    assert plan(state(), drifted).do == Do.ENSURE_STEP


def test_pass_before_the_pause_is_over_holds():
    action = plan(state(), seen(T + timedelta(seconds=299)))
    assert action.do == Do.HOLD and "holds until" in action.reason


def test_pass_after_the_pause_starts_the_next_step():
    action = plan(state(), seen(T + timedelta(seconds=300)))
    assert (action.do, action.to_step) == (Do.NEXT_STEP, 1)


def test_pass_on_the_last_analysed_step_promotes():
    action = plan(state(step=2), seen(T + timedelta(seconds=300), step=2))
    assert (action.do, action.to_step) == (Do.BEGIN_PROMOTION, 3)


def test_fail_rolls_back_at_once_even_mid_pause():
    action = plan(state(), seen(T + timedelta(seconds=30), verdict=Verdict.FAIL))
    assert action.do == Do.ROLL_BACK and "checks say fail" in action.reason
    assert action.analysis.verdict == Verdict.FAIL


def test_inconclusive_holds_and_never_promotes_however_long_the_pause_is_over():
    action = plan(state(), seen(T + timedelta(seconds=899), verdict=Verdict.INCONCLUSIVE))
    assert action.do == Do.HOLD and "inconclusive" in action.reason


def test_invalid_traffic_split_holds_says_why_and_never_promotes():
    action = plan(state(), seen(T + timedelta(seconds=600), verdict=Verdict.INVALID))
    assert action.do == Do.HOLD and "analysis invalid" in action.reason
    assert action.analysis.verdict == Verdict.INVALID
    aborted = plan(state(), seen(T + timedelta(seconds=900), verdict=Verdict.INVALID))
    assert aborted.do == Do.ABORT and "invalid" in aborted.reason


def test_inconclusive_past_the_deadline_aborts_with_the_reason():
    action = plan(state(), seen(T + timedelta(seconds=900), verdict=Verdict.INCONCLUSIVE))
    assert action.do == Do.ABORT and "deadline" in action.reason and "inconclusive" in action.reason


def test_metrics_unavailable_holds_then_aborts_past_the_deadline():
    down = dict(verdict=None, metrics_error="Prometheus unavailable: connection refused")
    assert plan(state(), seen(T + timedelta(seconds=400), **down)).do == Do.HOLD
    aborted = plan(state(), seen(T + timedelta(seconds=900), **down))
    assert aborted.do == Do.ABORT and "Prometheus unavailable" in aborted.reason


def test_canary_not_ready_holds_without_analysis():
    action = plan(state(), seen(T + timedelta(seconds=400), verdict=None, ready=False))
    assert action.do == Do.HOLD and "ready" in action.reason


def test_cluster_error_holds():
    action = plan(state(), Observed(T + timedelta(seconds=60), cluster_error="HTTP 503"))
    assert action.do == Do.HOLD and "HTTP 503" in action.reason


def test_other_phases_map_to_one_action_each():
    assert plan(state(Phase.PROMOTING), Observed(T)).do == Do.PROMOTE
    assert plan(state(Phase.ROLLING_BACK), Observed(T)).do == Do.RETREAT
    for phase in (Phase.PAUSED, Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED):
        assert plan(state(phase), Observed(T)).do == Do.NOTHING


def test_step_without_analysis_advances_on_time_alone():
    steps = parse_steps([{"weight": 10, "pause_s": 60, "analysis": False}, 100])
    action = plan(state(steps=steps), Observed(T + timedelta(seconds=60), route=ROUTER.expected(10),
                                               canary_version="2", canary_ready=True))
    assert action.do == Do.BEGIN_PROMOTION


def test_action_remembers_the_phase_and_step_it_was_planned_for():
    action = plan(state(step=1), seen(T + timedelta(seconds=300), step=1))
    assert (action.phase, action.step) == (Phase.PROGRESSING, 1)
