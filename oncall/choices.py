"""What an alert may do to a model (a runbook action) and what handling one came to (an outcome)."""

from django.db import models


class RunbookAction(models.TextChoices):
    ROLLBACK = "rollback", "roll back the rollout in flight, or production promoted within the window"
    PAUSE = "pause", "pause the rollout in flight"
    ANNOTATE = "annotate", "record the alert only"


class Outcome(models.TextChoices):
    ACTED = "acted"  # the action was taken
    DRY_RUN = "dry_run"  # the policy is a dry run: what would have been done is recorded
    SKIPPED = "skipped"  # the action did not apply (nothing in flight, promoted too long ago, ...)
    REFUSED = "refused"  # the rollout services refused it (a rollout promoting, no previous version, ...)
    ANNOTATED = "annotated"  # recorded only, by policy
    RESOLVED = "resolved"  # a resolved alert: recorded, never acted on
    IGNORED = "ignored"  # no registered model is named by the alert's labels
    FAILED = "failed"  # handling it raised an unexpected error: nothing was done, mlcp's log says why


# Alert names mlcp ships rules for (oncall/rules.py); a policy may name any other alert too.
MODEL_SLO_BURN = "MlcpModelErrorBudgetBurn"
