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
from datetime import datetime

from django.conf import settings
from django.db import transaction

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
