"""Analysis history that stays bounded: decisive analyses kept, the newest few of each step, the rest summed up.

The controller writes one `AnalysisRun` (~5 KB of queries and values) per
analysed rollout per tick: kept whole, 1,000 rollouts at 10 s ticks made about
46 GB a day. A step now keeps its decisive runs (the one that moved the
rollout, every failure) and its newest MLCP_ANALYSIS_KEEP_PER_STEP others; older
ones fold into the step's `AnalysisStepSummary` (how many, first and last, the
count of each verdict) in the transaction that writes the newest. A rollout's
history is so bounded by its steps, not by how long it runs: with 4 analysed
steps and 50 kept, at most about 4 x (50 + 2) rows, ~1.1 MB, per rollout.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Window
from django.db.models.functions import RowNumber

from rollouts.lease import check_fence
from rollouts.models import AnalysisRun, AnalysisStepSummary


def record_analysis(rollout_id: int, step: int, *, at: datetime, verdict: str, reason: str, evidence: dict,
                    decisive: bool, keep: int | None = None) -> AnalysisRun:
    """Write one analysis under the controller's lease (checked in the same transaction) and compact its step."""
    keep = settings.MLCP_ANALYSIS_KEEP_PER_STEP if keep is None else keep
    with transaction.atomic():
        generation = check_fence()
        run = AnalysisRun.objects.create(rollout_id=rollout_id, step=step, at=at, verdict=verdict, reason=reason,
                                         evidence=evidence, decisive=decisive, lease_generation=generation)
        if not decisive:
            compact_step(rollout_id, step, keep=keep)
    return run


def compact_step(rollout_id: int, step: int, *, keep: int) -> int:
    """Fold all but the newest `keep` undecisive runs of a step into its summary; how many were folded."""
    older = list(AnalysisRun.objects.filter(rollout_id=rollout_id, step=step, decisive=False)
                 .order_by("-at", "-id").values_list("pk", "at", "verdict")[keep:])
    if not older:
        return 0
    first, last = min(at for _, at, _ in older), max(at for _, at, _ in older)
    summary, _ = AnalysisStepSummary.objects.select_for_update().get_or_create(
        rollout_id=rollout_id, step=step, defaults={"first_at": first, "last_at": last})
    verdicts = Counter(summary.verdicts) + Counter(verdict for _, _, verdict in older)
    summary.runs += len(older)
    summary.first_at, summary.last_at = min(summary.first_at, first), max(summary.last_at, last)
    summary.verdicts = dict(sorted(verdicts.items()))
    summary.save(update_fields=["runs", "first_at", "last_at", "verdicts"])
    AnalysisRun.objects.filter(pk__in=[pk for pk, _, _ in older]).delete()
    return len(older)


@dataclass(frozen=True)
class AnalysisRecord:
    """One analysis to write with others (`record_analyses`)."""

    rollout_id: int
    step: int
    at: datetime
    verdict: str
    reason: str
    evidence: dict
    decisive: bool


def record_analyses(records: list[AnalysisRecord], *, keep: int | None = None, chunk: int = 500) -> int:
    """`record_analysis` for many rollouts at once: one fenced transaction, inserts of `chunk` rows, and
    the compaction of every step that now holds more than `keep` undecisive runs in a few queries,
    however many rollouts there are. How many runs were folded."""
    keep = settings.MLCP_ANALYSIS_KEEP_PER_STEP if keep is None else keep
    with transaction.atomic():
        generation = check_fence()
        AnalysisRun.objects.bulk_create(
            [AnalysisRun(rollout_id=r.rollout_id, step=r.step, at=r.at, verdict=r.verdict, reason=r.reason,
                         evidence=r.evidence, decisive=r.decisive, lease_generation=generation) for r in records],
            batch_size=chunk)
        steps = {(r.rollout_id, r.step) for r in records if not r.decisive}
        return _compact_steps(steps, keep=keep, chunk=chunk) if steps else 0


def _compact_steps(steps: set[tuple[int, int]], *, keep: int, chunk: int) -> int:
    """`compact_step` for each of `steps` that holds more than `keep` undecisive runs, in bulk."""
    rollout_ids = sorted({rollout_id for rollout_id, _ in steps})
    crowded: set[tuple[int, int]] = set()
    for begin in range(0, len(rollout_ids), chunk):
        crowded |= {(rollout_id, step) for rollout_id, step in AnalysisRun.objects
                    .filter(rollout_id__in=rollout_ids[begin:begin + chunk], decisive=False).order_by()
                    .values_list("rollout_id", "step").annotate(runs=Count("pk")).filter(runs__gt=keep)
                    .values_list("rollout_id", "step")} & steps
    if not crowded:
        return 0
    folded = 0
    crowded_ids = sorted({rollout_id for rollout_id, _ in crowded})
    for begin in range(0, len(crowded_ids), chunk):
        older = [row for row in AnalysisRun.objects
                 .filter(rollout_id__in=crowded_ids[begin:begin + chunk], decisive=False)
                 .annotate(newer=Window(RowNumber(), partition_by=[F("rollout_id"), F("step")],
                                        order_by=[F("at").desc(), F("id").desc()]))
                 .filter(newer__gt=keep).values_list("pk", "rollout_id", "step", "at", "verdict")
                 if (row[1], row[2]) in crowded]
        by_step: dict[tuple[int, int], list] = {}
        for pk, rollout_id, step, at, verdict in older:
            by_step.setdefault((rollout_id, step), []).append((pk, at, verdict))
        summaries = {(s.rollout_id, s.step): s for s in AnalysisStepSummary.objects.select_for_update()
                     .filter(rollout_id__in=crowded_ids[begin:begin + chunk])}
        new, changed = [], []
        for (rollout_id, step), runs in by_step.items():
            first, last = min(at for _, at, _ in runs), max(at for _, at, _ in runs)
            summary = summaries.get((rollout_id, step))
            if summary is None:
                summary = AnalysisStepSummary(rollout_id=rollout_id, step=step, first_at=first, last_at=last,
                                              runs=0, verdicts={})
                new.append(summary)
            else:
                changed.append(summary)
            verdicts = Counter(summary.verdicts) + Counter(verdict for _, _, verdict in runs)
            summary.runs += len(runs)
            summary.first_at, summary.last_at = min(summary.first_at, first), max(summary.last_at, last)
            summary.verdicts = dict(sorted(verdicts.items()))
        AnalysisStepSummary.objects.bulk_create(new)
        AnalysisStepSummary.objects.bulk_update(changed, ["runs", "first_at", "last_at", "verdicts"])
        AnalysisRun.objects.filter(pk__in=[pk for pk, _, _, _, _ in older]).delete()
        folded += len(older)
    return folded
