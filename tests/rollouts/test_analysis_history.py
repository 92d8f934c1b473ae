"""Analysis history stays bounded: decisive runs kept, the newest few of a step kept, the rest summed up.

And the circuit breaker in front of Prometheus: a failing Prometheus is asked once per cool-down, not once per
rollout per tick.
"""

from datetime import datetime, timedelta, timezone

import pytest

from rollouts import services
from rollouts.circuit import MetricsCircuit
from rollouts.history import record_analysis
from rollouts.lease import Grant, LeaseLost, acquire_lease, acting_under, release_lease
from rollouts.metrics import MetricsUnavailable
from rollouts.models import AnalysisRun, AnalysisStepSummary
from tests.factories import set_target

T = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def rollout(resnet, make_version):
    make_version(resnet, "deployed", production=True)
    set_target(resnet)
    return services.start_rollout(resnet, make_version(resnet), actor="ci")


def _record(rollout, minute, verdict="pass", *, step=0, decisive=False, keep=2):
    return record_analysis(rollout.pk, step, at=T + timedelta(minutes=minute), verdict=verdict, reason="",
                           evidence={"n": minute}, decisive=decisive, keep=keep)


@pytest.mark.django_db
def test_a_step_keeps_its_newest_runs_and_its_decisive_ones_and_sums_up_the_rest(rollout):
    _record(rollout, 0, "fail", decisive=True)
    for minute in range(1, 6):
        _record(rollout, minute, "inconclusive" if minute < 3 else "pass")
    _record(rollout, 0, step=1)  # another step is another budget

    kept = AnalysisRun.objects.filter(rollout=rollout, step=0).order_by("at")
    assert [(run.at.minute, run.verdict) for run in kept] == [(0, "fail"), (4, "pass"), (5, "pass")]
    summary = AnalysisStepSummary.objects.get(rollout=rollout, step=0)
    assert (summary.runs, summary.first_at, summary.last_at) == (3, T + timedelta(minutes=1), T + timedelta(minutes=3))
    assert summary.verdicts == {"inconclusive": 2, "pass": 1}
    assert AnalysisRun.objects.filter(rollout=rollout, step=1).count() == 1


@pytest.mark.django_db
def test_an_analysis_row_records_the_lease_it_was_written_under_and_none_without_it(rollout):
    generation = acquire_lease("a", ttl_s=30)
    with acting_under(Grant("a", generation)):
        assert _record(rollout, 0).lease_generation == generation
    release_lease("a")
    with acting_under(Grant("a", generation)), pytest.raises(LeaseLost):
        _record(rollout, 1)
    assert AnalysisRun.objects.count() == 1


class Failing:
    def __init__(self):
        self.calls, self.fail = 0, True

    def observe(self, *args, **kwargs):
        self.calls += 1
        if self.fail:
            raise MetricsUnavailable("timed out")
        return "observation"


def test_the_circuit_opens_after_failures_in_a_row_and_lets_one_call_through_after_the_cool_down():
    now = [0.0]
    prometheus = Failing()
    circuit = MetricsCircuit(prometheus, threshold=3, cooldown_s=30, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(MetricsUnavailable, match="timed out"):
            circuit.observe("m")
    with pytest.raises(MetricsUnavailable, match="not asked again") as refused:
        circuit.observe("m")
    assert (prometheus.calls, refused.value.code) == (3, "metrics_circuit_open")

    now[0] = 30.0
    with pytest.raises(MetricsUnavailable, match="timed out"):  # the one trial, failed: open again
        circuit.observe("m")
    with pytest.raises(MetricsUnavailable, match="not asked again"):
        circuit.observe("m")
    now[0], prometheus.fail = 60.0, False
    assert circuit.observe("m") == "observation"
    assert not circuit.is_open and prometheus.calls == 5
