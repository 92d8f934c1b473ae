"""On-call rows: each model's runbook policy, and every alert notification handled.

A `HandledAlert` row is written in the same transaction as the action it led
to; its unique key is what makes a repeated notification change nothing.
"""

from django.conf import settings
from django.db import models

from oncall.choices import Outcome, RunbookAction

DEFAULT_ROLLBACK_WINDOW_S = 24 * 3600


class RunbookPolicy(models.Model):
    """What alerts do to one model. A model without a row gets `oncall.policy.DEFAULT_POLICY` (record only)."""

    model = models.OneToOneField("registry.RegisteredModel", on_delete=models.CASCADE, related_name="runbook_policy")
    # {alertname: RunbookAction}; "*" is the action of any alert not named.
    actions = models.JSONField(default=dict, blank=True)
    dry_run = models.BooleanField(default=False, help_text="record what the alert would have done, do nothing")
    rollback_window_s = models.PositiveIntegerField(
        default=DEFAULT_ROLLBACK_WINDOW_S,
        help_text="production is rolled back only if it was promoted at most this long before the alert")
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    changed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"runbook policy of {self.model.name}"


class HandledAlert(models.Model):
    """One alert of one notification, as handled: the first delivery acts, repeats find this row.

    A row whose outcome is `failed` (handling raised; nothing was done) is taken over by the next delivery.
    """

    fingerprint = models.CharField(max_length=64)
    starts_at = models.DateTimeField()
    status = models.CharField(max_length=8)  # firing or resolved: each is handled once per firing
    alertname = models.CharField(max_length=128)
    model_name = models.CharField(max_length=63, blank=True, db_index=True)
    action = models.CharField(max_length=16, choices=RunbookAction.choices, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.TextField(blank=True, help_text="what was done or why not, for people")
    rollout = models.ForeignKey("rollouts.Rollout", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="alerts")
    labels = models.JSONField(default=dict)
    annotations = models.JSONField(default=dict)
    received_at = models.DateTimeField()
    received_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["fingerprint", "starts_at", "status"],
                                               name="alert_handled_once")]

    def __str__(self):
        return f"{self.alertname} {self.status} ({self.fingerprint}): {self.outcome}"
