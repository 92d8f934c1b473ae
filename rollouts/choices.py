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


class RouterKind(models.TextChoices):
    REPLICA_RATIO = "replica_ratio", "replica ratio between stable and canary Deployments"
    HTTPROUTE = "httproute", "Gateway API HTTPRoute weights"
