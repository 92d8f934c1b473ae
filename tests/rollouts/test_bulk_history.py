"""Analyses written many at once (a batched controller tick) keep the same bounded history as one at a time;
the tick's messages, said many at once, reach only the rollouts still where the tick saw them."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry.models import RegisteredModel
from rollouts import services
from rollouts.choices import Phase
from rollouts.controller import _say_many
from rollouts.history import AnalysisRecord, record_analyses, record_analysis
from rollouts.models import AnalysisRun, AnalysisStepSummary, Rollout
from tests.factories import set_target
from tests.rollouts.test_analysis_history import T


@pytest.fixture
def rollouts(make_version):
    made = []
    for name in ("bulk-a", "bulk-b", "bulk-c"):
        model = RegisteredModel.objects.create(name=name)
        make_version(model, "deployed", production=True)
        set_target(model, {"namespace": "ml", "deployment": name, "replicas": 4})
        made.append(services.start_rollout(model, make_version(model), actor="ci"))
    return made


def _history(rollout):
    runs = [(r.step, r.at, r.verdict, r.decisive) for r in AnalysisRun.objects.filter(rollout=rollout).order_by("at", "id")]
    summaries = [(s.step, s.runs, s.first_at, s.last_at, s.verdicts)
                 for s in AnalysisStepSummary.objects.filter(rollout=rollout)]
    return runs, summaries


@pytest.mark.django_db
def test_many_at_once_keep_the_history_one_at_a_time_keeps(rollouts):
    alone, *together = rollouts
    for minute in range(7):
        verdict = "inconclusive" if minute < 3 else "pass"
        record_analysis(alone.pk, 0, at=T + timedelta(minutes=minute), verdict=verdict, reason="", evidence={},
                        decisive=minute == 1, keep=2)
        record_analyses([AnalysisRecord(r.pk, 0, T + timedelta(minutes=minute), verdict, "", {}, minute == 1)
                         for r in together], keep=2)
    for rollout in together:
        assert _history(rollout) == _history(alone)
    assert AnalysisStepSummary.objects.get(rollout=alone).runs == 4


@pytest.mark.django_db
def test_writing_many_analyses_takes_as_many_queries_for_two_rollouts_as_for_one(rollouts):
    def queries(batch, minute):
        with CaptureQueriesContext(connection) as captured:
            record_analyses([AnalysisRecord(r.pk, 0, T + timedelta(minutes=minute), "pass", "", {}, False)
                             for r in batch], keep=1)
        return len(captured)
    for minute in range(2):  # every step over its budget from here on
        queries(rollouts, minute)
    assert queries(rollouts[:1], 2) == queries(rollouts, 3)


@pytest.mark.django_db
def test_messages_said_many_at_once_reach_only_rollouts_still_in_that_phase_and_step(rollouts):
    moved, *held = rollouts
    assert {(r.phase, r.current_step) for r in rollouts} == {(Phase.PENDING, 0)}
    Rollout.objects.filter(pk=moved.pk).update(current_step=1, message="moved on meanwhile")
    said = {r.pk: f"holding {r.pk}: 'p95' 12% slower; -- DROP TABLE x" for r in rollouts}
    _say_many(Phase.PENDING, 0, said, chunk=1)  # a transaction per rollout, as with many chunks
    assert Rollout.objects.get(pk=moved.pk).message == "moved on meanwhile"
    assert {r.pk: r.message for r in Rollout.objects.filter(pk__in=[r.pk for r in held])} == \
        {r.pk: said[r.pk] for r in held}
