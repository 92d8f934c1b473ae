"""Registry rows: models, immutable versions, blobs, aliases, golden sets, audit."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from registry.choices import ArtifactFormat, SignatureSource, VersionStatus
from registry.gate_verdicts import GateVerdict

model_name_validator = RegexValidator(
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
    "use lowercase letters, digits and dashes (a DNS label), at most 63 characters",
)


def default_slo() -> dict:
    return {"availability": 0.999, "latency_p95_ms": 250}


class RegisteredModel(models.Model):
    name = models.CharField(max_length=63, unique=True, validators=[model_name_validator])
    description = models.TextField(blank=True)
    task = models.CharField(max_length=64, default="image-classification")
    class_labels = models.JSONField(default=list, blank=True)
    owner = models.CharField(max_length=128, blank=True)
    gate_policy = models.JSONField(default=dict, blank=True, help_text="overrides of the default gate policy")
    slo = models.JSONField(default=default_slo, blank=True)
    notification_webhook = models.URLField(blank=True)
    default_golden_set = models.ForeignKey(
        "GoldenSet", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Where rollouts of this model go (k8s.RouterTarget as JSON; {} = not configured yet).
    # Set by an admin only: a rollout request can name no other Deployment.
    rollout_target = models.JSONField(default=dict, blank=True)
    # Who last changed what a version must pass; for two-person approval they may not approve (None: nobody, or
    # a system actor).
    gate_policy_changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                               on_delete=models.SET_NULL, related_name="+")
    gate_policy_changed_at = models.DateTimeField(null=True, blank=True)
    golden_set_changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                              on_delete=models.SET_NULL, related_name="+")
    golden_set_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Blob(models.Model):
    """Bytes stored once under their SHA-256, whatever refers to them.

    It also remembers when its stored bytes were last found to hash to the
    digest, so a Range request can trust a recent check instead of re-reading
    the whole blob, and when they were found altered, so they are never served.

    An upload claims the row (`claimed_at`) before it commits the bytes to the
    store; a row that nothing references and nobody claimed within
    MLCP_ORPHAN_BLOB_GRACE_S is removed, bytes and all, by the periodic sweep
    (`registry.tasks.remove_unreferenced_blobs`).
    """

    digest = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(default=timezone.now,
                                      help_text="when an upload last stored or reused these bytes")
    verified_at = models.DateTimeField(null=True, blank=True)
    tampered_at = models.DateTimeField(null=True, blank=True)
    tampered_digest = models.CharField(max_length=64, blank=True, help_text="what the altered bytes hashed to")

    def __str__(self):
        return f"sha256:{self.digest}"

    @property
    def is_tampered(self) -> bool:
        return self.tampered_at is not None

    def verified_within(self, seconds: int, *, now) -> bool:
        return self.verified_at is not None and (now - self.verified_at).total_seconds() < seconds

    def verify(self, store=None, *, now) -> bool:
        """Re-hash the stored bytes and record the outcome; True when they still match the digest."""
        from registry.storage import default_store

        return self.record_hash((store or default_store()).hash_stored(self.digest), read_at=now)

    def record_hash(self, actual_digest: str, *, read_at) -> bool:
        """Record what the stored bytes, read from `read_at` on, hashed to; True when that is the digest.

        Matching bytes clear a tampered mark only when it predates the read: a
        long download that began before the damage proves nothing about now.
        """
        blobs = Blob.objects.filter(pk=self.pk)
        if actual_digest == self.digest:
            # Content addressing makes a match proof of the original bytes, so a restored blob is served again.
            restored = blobs.filter(tampered_at__lt=read_at).update(
                verified_at=read_at, tampered_at=None, tampered_digest="")
            if not restored:
                blobs.filter(tampered_at__isnull=True).update(verified_at=read_at)
            self.refresh_from_db(fields=["verified_at", "tampered_at", "tampered_digest"])
            if restored:
                AuditEvent.objects.create(actor="system", action="blob.restored", detail={"digest": self.digest})
            return True
        # Compare-and-set: of many requests finding the same damage, one writes the audit row.
        first_to_notice = blobs.filter(tampered_at__isnull=True).update(
            tampered_at=read_at, tampered_digest=actual_digest)
        if not first_to_notice:
            blobs.update(tampered_digest=actual_digest)
        self.refresh_from_db(fields=["verified_at", "tampered_at", "tampered_digest"])
        if first_to_notice:
            versions = [str(v) for v in self.versions.select_related("model")]
            AuditEvent.objects.create(actor="system", action="blob.tampered",
                                      reason=f"stored bytes hash to sha256:{actual_digest}",
                                      detail={"digest": self.digest, "actual": actual_digest, "versions": versions})
        return False


class ModelVersion(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    format = models.CharField(max_length=8, choices=ArtifactFormat.choices, default=ArtifactFormat.ONNX)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="versions")
    artifact_name = models.CharField(max_length=255)
    input_signature = models.JSONField(default=list)
    output_signature = models.JSONField(default=list)
    graph_info = models.JSONField(default=dict, blank=True)
    git_commit = models.CharField(max_length=64, blank=True)
    ci_run_url = models.URLField(blank=True, max_length=500)
    training_data_digest = models.CharField(max_length=128, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="derived")
    derivation = models.CharField(max_length=64, blank=True, help_text="how a derived version was made")
    tags = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=32, choices=VersionStatus.choices, default=VersionStatus.REGISTERED)
    status_reason = models.TextField(blank=True)
    signature_bundle = models.TextField()
    signature_source = models.CharField(max_length=16, choices=SignatureSource.choices)
    signer = models.CharField(max_length=255)
    signing_key_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["model__name", "-number"]
        constraints = [models.UniqueConstraint(fields=["model", "number"], name="unique_version_number")]

    def __str__(self):
        return f"{self.model.name}:{self.number}"

    @property
    def digest(self) -> str:
        return self.blob_id

    @property
    def size(self) -> int:
        return self.blob.size


class Alias(models.Model):
    """A named pointer such as `production`; every move is an AliasMove row."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=63, validators=[model_name_validator])
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model__name", "name"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="unique_alias_per_model")]

    def __str__(self):
        return f"{self.model.name}@{self.name}"


class AliasMove(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="alias_moves")
    alias_name = models.CharField(max_length=63)
    from_version = models.ForeignKey(ModelVersion, null=True, on_delete=models.PROTECT, related_name="+")
    to_version = models.ForeignKey(ModelVersion, null=True, on_delete=models.PROTECT, related_name="+")
    actor = models.CharField(max_length=150)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]


class GoldenSet(models.Model):
    """A labelled evaluation set (.npz: inputs, labels, class_names), stored and signed like a model."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="golden_sets")
    number = models.PositiveIntegerField()
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="golden_sets")
    num_examples = models.PositiveIntegerField()
    input_shape = models.JSONField(default=list)
    class_names = models.JSONField(default=list)
    description = models.TextField(blank=True)
    signature_bundle = models.TextField()
    signer = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["model__name", "-number"]
        constraints = [models.UniqueConstraint(fields=["model", "number"], name="unique_golden_set_number")]

    @property
    def digest(self) -> str:
        return self.blob_id


class AuditEvent(models.Model):
    """Who did what, when and why: every state change and alias move."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    model_name = models.CharField(max_length=63, blank=True, db_index=True)
    version_number = models.PositiveIntegerField(null=True, blank=True)
    from_state = models.CharField(max_length=32, blank=True)
    to_state = models.CharField(max_length=32, blank=True)
    reason = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.model_name}"


class GateResult(models.Model):
    """One gate's verdict on one version, with what it measured; one row per gate per version."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="gate_results")
    gate = models.CharField(max_length=32)
    position = models.PositiveSmallIntegerField(default=0)
    # Changed only by registry.services.transition_gate, along registry.gate_verdicts.GATE_TRANSITIONS.
    verdict = models.CharField(max_length=16, choices=[(v.value, v.name.title()) for v in GateVerdict],
                               default=GateVerdict.PENDING)
    summary = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    device = models.CharField(max_length=64, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    # The sandbox level the gate ran under (workers.sandbox.isolation), so a verdict says how it was obtained.
    isolation = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)  # deliveries, counted before each run
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["version", "position"]
        constraints = [models.UniqueConstraint(fields=["version", "gate"], name="one_result_per_gate")]

    def __str__(self):
        return f"{self.version} {self.gate}: {self.verdict}"
