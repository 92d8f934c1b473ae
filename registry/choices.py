"""A model version's lifecycle: its statuses and the one table of legal moves."""

from django.db import models


class VersionStatus(models.TextChoices):
    REGISTERED = "registered"
    GATING = "gating"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled_back"
    ARCHIVED = "archived"


S = VersionStatus
TRANSITIONS: dict[str, set[str]] = {
    # A gate that errors (not fails) sends the version back to REGISTERED to be re-gated.
    S.REGISTERED: {S.GATING, S.ARCHIVED},
    S.GATING: {S.AWAITING_APPROVAL, S.APPROVED, S.REJECTED, S.REGISTERED},
    S.AWAITING_APPROVAL: {S.APPROVED, S.REJECTED, S.ARCHIVED},
    S.APPROVED: {S.DEPLOYED, S.REJECTED, S.ARCHIVED},
    # A superseded production version stays fit to ship: on-call can roll back to it.
    S.DEPLOYED: {S.APPROVED, S.ROLLED_BACK, S.ARCHIVED},
    S.ROLLED_BACK: {S.GATING, S.ARCHIVED},
    S.REJECTED: {S.ARCHIVED},
    S.ARCHIVED: set(),
}

SHIPPABLE = {S.APPROVED, S.DEPLOYED}


class ArtifactFormat(models.TextChoices):
    ONNX = "onnx"
    TORCH_EXPORT = "pt2", "torch.export program"


class SignatureSource(models.TextChoices):
    REGISTRY = "registry", "signed by the registry"
    CLIENT = "client", "client bundle verified against a trusted key"
