"""Rollout rows: the rollout itself (everything the controller needs to resume
mid-step lives here), its timeline of events, its analysis runs, the lease
that lets only one controller act at a time, and the outbox of its webhook
notifications with every attempt to deliver them.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from rollouts.choices import ACTIVE, Delivery, Phase, RolloutKind
from rollouts.strategy import DEFAULT_WEIGHTS


def default_strategy() -> dict:
    return {"steps": list(DEFAULT_WEIGHTS)}


class Rollout(models.Model):
    """Shipping one model version as a canary beside the stable one, step by step."""

    model = models.ForeignKey("registry.RegisteredModel", on_delete=models.PROTECT, related_name="rollouts")
    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="rollouts",
                                help_text="the canary")
    stable_version = models.ForeignKey("registry.ModelVersion", null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="+", help_text="production when the rollout started")
    kind = models.CharField(max_length=16, choices=RolloutKind.choices, default=RolloutKind.CANARY)
    strategy = models.JSONField(default=default_strategy, help_text="{steps: [{weight, pause_s, analysis}]}")
    traffic = models.JSONField(help_text="{router, namespace, deployment, replicas, route, *_service}")
    analysis = models.JSONField(default=dict, blank=True, help_text="AnalysisConfig overrides, hold_budget_s")
    approval_required = models.BooleanField(default=True)
    version_status_before = models.CharField(
        max_length=32, blank=True,
        help_text="the canary's status before this rollout made it `canary`: where it returns if the rollout "
                  "ends without promoting it (unless rolled back for its own fault)")

    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.PENDING, db_index=True)
    current_step = models.PositiveSmallIntegerField(default=0)
    step_started_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True, help_text="the current step must pass by then")
    retreat_phase = models.CharField(max_length=16, blank=True,
                                     help_text="rolled_back or aborted: where ROLLING_BACK ends")
    abort_reason = models.TextField(blank=True)
    message = models.TextField(blank=True, help_text="what the controller last saw, for people")

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The database, not only the service, refuses a second rollout in flight.
            models.UniqueConstraint(fields=["model"], condition=Q(phase__in=sorted(ACTIVE)),
                                    name="one_active_rollout_per_model"),
        ]

    def __str__(self):
        return f"rollout {self.pk} of {self.model.name}:{self.version.number} ({self.phase})"


class RolloutEvent(models.Model):
    """Every change of a rollout (phase or step): its timeline and its audit trail."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="events")
    old = models.CharField(max_length=16, blank=True)
    new = models.CharField(max_length=16)
    step = models.PositiveSmallIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=150)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self):
        return f"{self.at:%H:%M:%S} {self.old or '-'} -> {self.new} {self.reason}"


class AnalysisRun(models.Model):
    """One analysis of one step: the verdict and the queries and values behind it.

    `at` is the instant this rollout's own analysis was evaluated at (each
    rollout takes its own, not one per tick), `recorded_at` when the row was
    written. Rows that decided nothing are compacted into an
    `AnalysisStepSummary` beyond the newest MLCP_ANALYSIS_KEEP_PER_STEP of a step
    (`rollouts.history`); `decisive` ones (a move, a failure) are always kept.
    """

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="analysis_runs")
    step = models.PositiveSmallIntegerField()
    at = models.DateTimeField(db_index=True)
    verdict = models.CharField(max_length=16)
    reason = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    recorded_at = models.DateTimeField(default=timezone.now)
    decisive = models.BooleanField(default=False, help_text="it moved the rollout, or failed")
    lease_generation = models.PositiveBigIntegerField(null=True, blank=True,
                                                      help_text="the controller lease it was written under")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["rollout", "step", "decisive", "at"], name="analysisrun_retention")]


class AnalysisStepSummary(models.Model):
    """The analyses of one step that were compacted away: how many, when, and their verdicts."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="analysis_summaries")
    step = models.PositiveSmallIntegerField()
    runs = models.PositiveIntegerField(default=0)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    verdicts = models.JSONField(default=dict, blank=True, help_text="{verdict: count}")

    class Meta:
        ordering = ["rollout", "step"]
        constraints = [models.UniqueConstraint(fields=["rollout", "step"], name="one_summary_per_step")]

    def __str__(self):
        return f"rollout {self.rollout_id} step {self.step}: {self.runs} compacted analyses"


class ControllerLease(models.Model):
    """One row: which controller may act, until when (taken by compare-and-set), and its heartbeat.

    The holder writes the heartbeat each tick, so the web can tell whether any
    controller is acting (`rollouts.liveness`) and `/metrics` can show the
    ticks' durations without a second scrape target.
    """

    holder = models.CharField(max_length=200)
    expires_at = models.DateTimeField()
    # The fencing token: one more each time the lease changes hands (a lapsed
    # lease taken again by its old holder included). Every controller write
    # checks it (`rollouts.lease`), so a controller that lost the lease writes nothing.
    generation = models.PositiveBigIntegerField(default=0)
    tick_started_at = models.DateTimeField(null=True, blank=True)
    tick_finished_at = models.DateTimeField(null=True, blank=True)
    tick_duration_s = models.FloatField(null=True, blank=True, help_text="the last finished tick's")
    rollouts_reconciled = models.PositiveIntegerField(default=0, help_text="by the last finished tick")
    # Every finished tick, cumulative: a Prometheus histogram kept in the row (rollouts.liveness.TICK_BUCKETS_S).
    tick_count = models.PositiveBigIntegerField(default=0)
    tick_seconds_sum = models.FloatField(default=0.0)
    tick_buckets = models.JSONField(default=list, blank=True, help_text="cumulative counts per bucket bound")

    def __str__(self):
        return f"{self.holder} until {self.expires_at:%Y-%m-%d %H:%M:%S}"


class Notification(models.Model):
    """One outcome to tell the model's webhook, written in the transaction of the change it reports.

    `rollouts.outbox` delivers it afterwards; `message_id` is its Standard
    Webhooks `webhook-id` on every attempt, so a receiver dedupes retries.
    """

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=40)
    url = models.CharField(max_length=2000, help_text="the model's webhook when the outcome happened")
    payload = models.JSONField(help_text="the body, fixed when the outcome happened")
    message_id = models.CharField(max_length=64, unique=True)
    state = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="claims so far, a sender that died included")
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Who holds the row while SENDING, and until when; every claim takes a fresh token.
    claim_token = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="notification_due")]

    def __str__(self):
        return f"{self.event} of rollout {self.rollout_id} ({self.state})"


class NotificationAttempt(models.Model):
    """One POST of a notification: when, how long, and what came back (an HTTP status or an error)."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_s = models.FloatField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    sender = models.CharField(max_length=200)

    class Meta:
        ordering = ["notification", "number", "id"]

    def __str__(self):
        return f"attempt {self.number}: {self.status_code or self.error}"
