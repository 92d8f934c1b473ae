"""How registry rows look in the API."""

import json


from rest_framework import serializers

from registry.models import Alias, AliasMove, AuditEvent, GateResult, GoldenSet, ModelVersion, RegisteredModel


class RegisteredModelSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField()
    default_golden_set = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = ["name", "description", "task", "class_labels", "owner", "gate_policy", "slo",
                  "notification_webhook", "default_golden_set", "aliases", "created_at", "created_by"]
        read_only_fields = ["created_at", "created_by", "default_golden_set", "aliases"]

    def get_default_golden_set(self, obj) -> int | None:
        return obj.default_golden_set.number if obj.default_golden_set else None

    def get_aliases(self, obj) -> dict:
        return {a.name: a.version.number for a in obj.aliases.select_related("version")}

    def validate_slo(self, value):
        availability = value.get("availability", 0.999)
        if not isinstance(availability, (int, float)) or not 0 < availability < 1:
            raise serializers.ValidationError("availability must be a number between 0 and 1, e.g. 0.999")
        latency = value.get("latency_p95_ms", 250)
        if not isinstance(latency, (int, float)) or latency <= 0:
            raise serializers.ValidationError("latency_p95_ms must be a positive number")
        return value


class ModelVersionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    digest = serializers.CharField(read_only=True)
    size = serializers.IntegerField(read_only=True)
    parent = serializers.SerializerMethodField()
    created_by = serializers.StringRelatedField()
    aliases = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    links = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["model", "number", "status", "status_reason", "format", "artifact_name", "digest", "size",
                  "input_signature", "output_signature", "graph_info", "git_commit", "ci_run_url",
                  "training_data_digest", "parent", "derivation", "tags", "signature_source", "signer",
                  "signing_key_id", "aliases", "created_at", "created_by", "links"]
        read_only_fields = fields

    def get_parent(self, obj) -> int | None:
        return obj.parent.number if obj.parent_id else None

    def get_links(self, obj) -> dict:
        base = f"/api/v1/models/{obj.model.name}/versions/{obj.number}/"
        return {name: base + name for name in ("artifact", "signature", "verify", "gates")}


class JSONTextField(serializers.JSONField):
    """JSON that arrives as text in a multipart form, or already parsed in a JSON body."""

    def to_internal_value(self, data):
        if isinstance(data, (str, bytes)):
            try:
                return json.loads(data)
            except ValueError:
                self.fail("invalid")
        return super().to_internal_value(data)


class VersionUploadSerializer(serializers.Serializer):
    """The non-file fields of `POST models/{name}/versions/` (multipart)."""

    format = serializers.ChoiceField(choices=["onnx", "pt2"], default="onnx")
    sha256 = serializers.RegexField(r"^(sha256:)?[0-9a-fA-F]{64}$", required=False,
                                    help_text="the digest the client computed; a mismatch stores nothing")
    git_commit = serializers.RegexField(r"^[0-9a-fA-F]{7,64}$", required=False, allow_blank=True)
    ci_run_url = serializers.URLField(required=False, allow_blank=True)
    training_data_digest = serializers.CharField(required=False, allow_blank=True, max_length=128)
    tags = JSONTextField(required=False)
    parent = serializers.IntegerField(required=False, min_value=1)
    declared_signature = JSONTextField(required=False)

    def validate_tags(self, value):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise serializers.ValidationError("tags must be a JSON object of string keys")
        return value

    def validate_declared_signature(self, value):
        if not isinstance(value, dict) or not {"inputs", "outputs"} >= set(value):
            raise serializers.ValidationError("declared_signature must be {'inputs': [...], 'outputs': [...]}")
        return value


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


class AliasSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number")

    class Meta:
        model = Alias
        fields = ["name", "version", "updated_at"]


class AliasMoveRequestSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)
    reason = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


class AliasMoveSerializer(serializers.ModelSerializer):
    from_version = serializers.SerializerMethodField()
    to_version = serializers.SerializerMethodField()

    class Meta:
        model = AliasMove
        fields = ["alias_name", "from_version", "to_version", "actor", "reason", "at"]

    def get_from_version(self, obj) -> int | None:
        return obj.from_version.number if obj.from_version_id else None

    def get_to_version(self, obj) -> int | None:
        return obj.to_version.number if obj.to_version_id else None


class GoldenSetSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    digest = serializers.CharField(read_only=True)

    class Meta:
        model = GoldenSet
        fields = ["model", "number", "digest", "num_examples", "input_shape", "class_names", "description",
                  "signer", "created_at"]
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["at", "actor", "action", "model_name", "version_number", "from_state", "to_state", "reason",
                  "detail"]


class GateResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = GateResult
        fields = ["gate", "position", "verdict", "summary", "metrics", "evidence", "device", "timings", "attempts",
                  "started_at", "finished_at"]


class SigningKeySerializer(serializers.Serializer):
    key_id = serializers.CharField(help_text="sha256 of the PEM; the `hint` in model-signing bundles")
    name = serializers.CharField()
    active = serializers.BooleanField()
    pem = serializers.CharField()
