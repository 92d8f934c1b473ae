"""A rollout's lifecycle: its phases and the one table of legal moves between them.

Only `rollouts.services.transition_rollout` changes a phase, and only along
`TRANSITIONS`; anything else is an `IllegalTransition`, never a silent no-op.
"""

from django.db import models


class Phase(models.TextChoices):
    PENDING = "pending"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTING = "promoting"
    SUCCEEDED = "succeeded"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    FAILED = "failed"


P = Phase
TRANSITIONS: dict[str, set[str]] = {
    # A rollout whose only step is 100% (an on-call rollback) goes straight to promotion.
    P.PENDING: {P.PROGRESSING, P.PROMOTING, P.PAUSED, P.ROLLING_BACK, P.FAILED},
    P.PROGRESSING: {P.PAUSED, P.PROMOTING, P.ROLLING_BACK, P.FAILED},
    P.PAUSED: {P.PROGRESSING, P.PROMOTING, P.ROLLING_BACK},
    # The stable Deployment is already taking the canary's template: no way back
    # but forward (a rollback after it is a new rollout of the previous version).
    P.PROMOTING: {P.SUCCEEDED, P.FAILED},
    # ROLLING_BACK is the retreat (all traffic to stable, canary to zero) of both
    # a rollback and an abort; `Rollout.retreat_phase` says which one it ends in.
    P.ROLLING_BACK: {P.ROLLED_BACK, P.ABORTED, P.FAILED},
    P.SUCCEEDED: set(),
    P.ROLLED_BACK: set(),
    P.ABORTED: set(),
    P.FAILED: set(),
}

TERMINAL = frozenset(phase for phase, moves in TRANSITIONS.items() if not moves)
ACTIVE = frozenset(set(Phase) - TERMINAL)
RETREAT_OUTCOMES = frozenset({P.ROLLED_BACK, P.ABORTED})


class RolloutKind(models.TextChoices):
    CANARY = "canary", "canary with analysis"
    ROLLBACK = "rollback", "immediate rollback to a previous version"


class Delivery(models.TextChoices):
    """Where one outbox notification (`rollouts.models.Notification`) stands on its way to the webhook."""

    PENDING = "pending"  # written with the rollout's outcome, in its transaction; not tried yet
    SENDING = "sending"  # claimed by one sender until its lease expires
    RETRYING = "retrying"  # tried and failed; tried again at `next_attempt_at`
    DELIVERED = "delivered"  # the receiver answered 2xx
    DEAD = "dead"  # out of attempts, or refused for good (an address it may not reach, no secret)


D = Delivery
DELIVERY_TRANSITIONS: dict[str, set[str]] = {
    D.PENDING: {D.SENDING},
    # SENDING to SENDING: another sender re-claims a row whose sender died mid-send (its lease expired).
    D.SENDING: {D.SENDING, D.DELIVERED, D.RETRYING, D.DEAD},
    D.RETRYING: {D.SENDING},
    D.DELIVERED: set(),
    # Only an operator (`manage.py sendnotifications --requeue-dead`) brings a dead letter back.
    D.DEAD: {D.RETRYING},
}
CLAIMABLE = frozenset({D.PENDING, D.RETRYING})
UNDELIVERED = frozenset({D.PENDING, D.SENDING, D.RETRYING})
