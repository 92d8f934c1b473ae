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


class Control(models.TextChoices):
    """What on-call may do to a rollout by hand; the controller moves it otherwise."""

    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote", "promote (skip the analysis)"
    ABORT = "abort"
    ROLLBACK = "rollback", "roll back (and mark the version bad)"


C = Control
_STEERABLE = frozenset({C.PAUSE, C.PROMOTE, C.ABORT, C.ROLLBACK})
# Which control each phase accepts: the services refuse the rest, and the API and UI offer only these.
# Nothing once the stable Deployment takes the canary's template (PROMOTING: the way back is a new rollout of
# the previous version, once it has succeeded). While traffic is already going back (ROLLING_BACK) an abort
# can still become a rollback, which marks the version bad; never the reverse.
CONTROLS: dict[str, frozenset[str]] = {
    P.PENDING: _STEERABLE,
    P.PROGRESSING: _STEERABLE,
    P.PAUSED: (_STEERABLE - {C.PAUSE}) | {C.RESUME},
    P.PROMOTING: frozenset(),
    P.ROLLING_BACK: frozenset({C.ROLLBACK}),
    P.SUCCEEDED: frozenset(),
    P.ROLLED_BACK: frozenset(),
    P.ABORTED: frozenset(),
    P.FAILED: frozenset(),
}
# The phases each control may move a rollout to; every one is a move in TRANSITIONS.
CONTROL_TARGETS: dict[str, frozenset[str]] = {
    C.PAUSE: frozenset({P.PAUSED}),
    C.RESUME: frozenset({P.PROGRESSING}),
    C.PROMOTE: frozenset({P.PROGRESSING, P.PROMOTING}),
    C.ABORT: frozenset({P.ROLLING_BACK}),
    C.ROLLBACK: frozenset({P.ROLLING_BACK}),
}



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


def allowed_controls(phase: str, kind: str) -> frozenset[str]:
    """The controls a rollout of `kind` in `phase` accepts now.

    A rollback rollout is not rolled back again: its stable is the version it replaces, the bad one.
    """
    controls = CONTROLS[phase]
    return controls - {C.ROLLBACK} if kind == RolloutKind.ROLLBACK else controls
