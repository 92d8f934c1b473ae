"""Registry rows: models, immutable versions, blobs, aliases, golden sets, audit."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from registry.choices import ArtifactFormat, SignatureSource, VersionStatus

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
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Blob(models.Model):
    """Bytes stored once under their SHA-256, whatever refers to them."""

    digest = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"sha256:{self.digest}"


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


class GateVerdict(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


class GateResult(models.Model):
    """One gate's verdict on one version, with what it measured; one row per gate per version."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="gate_results")
    gate = models.CharField(max_length=32)
    position = models.PositiveSmallIntegerField(default=0)
    verdict = models.CharField(max_length=16, choices=GateVerdict.choices, default=GateVerdict.PENDING)
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
