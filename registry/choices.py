"""A model version's lifecycle: its statuses and the one table of legal moves,
and who may change the settings that decide whether a version ships.
"""

from typing import NamedTuple

from django.db import models

from controlplane.roles import Role


class VersionStatus(models.TextChoices):
    REGISTERED = "registered"
    GATING = "gating"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    CANARY = "canary"
    REJECTED = "rejected"
    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled_back"
    ARCHIVED = "archived"


S = VersionStatus
TRANSITIONS: dict[str, set[str]] = {
    # A gate that errors (not fails) sends the version back to REGISTERED to be re-gated.
    S.REGISTERED: {S.GATING, S.ARCHIVED},
    S.GATING: {S.AWAITING_APPROVAL, S.APPROVED, S.REJECTED, S.REGISTERED},
    # CANARY while its rollout is in flight (a rollout may ship a version awaiting approval when its
    # model's policy does not require one); the rollout's end decides where it goes next.
    S.AWAITING_APPROVAL: {S.APPROVED, S.REJECTED, S.ARCHIVED, S.CANARY},
    S.APPROVED: {S.CANARY, S.REJECTED, S.ARCHIVED},
    # DEPLOYED is production, and only a promoted canary reaches it (a first deploy too). A rollout that
    # ends otherwise returns the version to the status it had before (Rollout.version_status_before), or
    # ROLLED_BACK when it was rolled back for its own fault. An approver may still reject it mid-flight.
    S.CANARY: {S.DEPLOYED, S.APPROVED, S.AWAITING_APPROVAL, S.ROLLED_BACK, S.REJECTED},
    # A superseded production version stays fit to ship: on-call can roll back to it.
    S.DEPLOYED: {S.APPROVED, S.ROLLED_BACK, S.ARCHIVED},
    S.ROLLED_BACK: {S.GATING, S.ARCHIVED},
    S.REJECTED: {S.ARCHIVED},
    S.ARCHIVED: set(),
}


class VersionControl(models.TextChoices):
    """What a person may do to a version by hand (the gate pipeline and rollouts move it otherwise)."""

    APPROVE = "approve"
    REJECT = "reject"
    REGATE = "regate", "run the gates again"


C = VersionControl
# Which control each status accepts: the services refuse the rest, and the API and UI offer only these.
# Narrower than TRANSITIONS: GATING -> APPROVED is the pipeline's move under a policy that needs no
# approver, never a person's.
CONTROLS: dict[str, frozenset[str]] = {
    S.REGISTERED: frozenset({C.REGATE}),
    S.GATING: frozenset({C.REJECT}),
    S.AWAITING_APPROVAL: frozenset({C.APPROVE, C.REJECT}),
    S.APPROVED: frozenset({C.REJECT}),
    S.CANARY: frozenset({C.REJECT}),
    S.DEPLOYED: frozenset(),
    S.ROLLED_BACK: frozenset(),
    S.REJECTED: frozenset(),
    S.ARCHIVED: frozenset(),
}
# The status each control moves a version to; every control a status accepts is a move in TRANSITIONS.
CONTROL_TARGETS: dict[str, str] = {C.APPROVE: S.APPROVED, C.REJECT: S.REJECTED, C.REGATE: S.GATING}


class ArtifactFormat(models.TextChoices):
    ONNX = "onnx"
    TORCH_EXPORT = "pt2", "torch.export program"


class SignatureSource(models.TextChoices):
    REGISTRY = "registry", "signed by the registry"
    CLIENT = "client", "client bundle verified against a trusted key"


class Governed(NamedTuple):
    role: Role  # the least role that changes it (admin always may)
    endpoint: str  # PUT models/{name}/<endpoint>, with a reason


# A model's settings that decide what a version must pass and where it ships. Each changes only through
# its own endpoint and service function, with a reason in the audit trail; never through the model's
# create or update, so a `ci` token that registers a model cannot also choose how it is judged.
GOVERNED_SETTINGS: dict[str, Governed] = {
    "gate_policy": Governed(Role.APPROVER, "gate-policy"),
    "default_golden_set": Governed(Role.APPROVER, "default-golden-set"),
    "rollout_target": Governed(Role.ADMIN, "target"),
}
