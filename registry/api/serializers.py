"""How registry rows look in the API, and what each write accepts.

Every field a client writes is checked here for type, range and size, so a
malformed body is a 400 `invalid_input` naming the field, never a 500 and
never a row that breaks a listing, a gate or a rollout later.
"""

import copy
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework import serializers

from controlplane import untrusted_json
from controlplane.api import ClientJSONField
from registry.choices import CONTROLS
from registry.models import (Alias, AliasMove, AuditEvent, GateResult, GoldenSet, ModelVersion, RegisteredModel,
                             model_name_validator)

MAX_DESCRIPTION = 10_000
MAX_REASON = 2000
MAX_CLASS_LABELS = 50_000  # ImageNet-21k has 21,841 classes
MAX_LABEL = 256
MAX_TAGS = 64
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 1024
MAX_SIGNATURE_TENSORS = 1024
MAX_TENSOR_NAME = 256
MAX_RANK = 32
MAX_LATENCY_MS = 3_600_000
MAX_VERSION_NUMBER = 2**31 - 1  # PositiveIntegerField

# What a version listing shows of each version's signatures and graph info (the detail shows all of it).
LISTED_TENSORS = 16
LISTED_DIMS = 8
LISTED_NAME = 128
LISTED_OPSETS = 16
LISTED_REASON = 1000


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


NUL_MESSAGE = "must not contain NUL characters (\\u0000)"


def _require_http_url(value: str) -> str:
    if not value:
        return value
    try:
        scheme = urlsplit(value).scheme
    except ValueError:  # urlsplit's own refusal, e.g. "http://[" (an unclosed IPv6 address)
        scheme = None
    if scheme not in ("http", "https"):
        raise serializers.ValidationError("must be an http:// or https:// URL")
    return value


class RegisteredModelSerializer(serializers.ModelSerializer):
    """A model as shown, and what its create or update writes.

    Its governed settings (registry.choices.GOVERNED_SETTINGS: gate policy, default golden set, rollout
    target) are shown here but change only through their own endpoints, with a reason.
    """

    # The model's JSON columns (class labels, SLO) as fields that refuse what no database stores.
    serializer_field_mapping = {**serializers.ModelSerializer.serializer_field_mapping,
                                models.JSONField: ClientJSONField}

    # Null where nobody is recorded: made by a command or a test, or the user since deleted.
    created_by = serializers.StringRelatedField(allow_null=True)
    default_golden_set = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField(help_text="{alias name: version number}")
    gate_policy_changed_by = serializers.StringRelatedField(allow_null=True)
    golden_set_changed_by = serializers.StringRelatedField(allow_null=True)

    class Meta:
        model = RegisteredModel
        fields = ["name", "description", "task", "class_labels", "owner", "gate_policy", "slo",
                  "notification_webhook", "default_golden_set", "rollout_target", "aliases",
                  "gate_policy_changed_by", "gate_policy_changed_at", "golden_set_changed_by",
                  "golden_set_changed_at", "created_at", "created_by"]
        read_only_fields = ["created_at", "created_by", "default_golden_set", "aliases", "gate_policy",
                            "rollout_target", "gate_policy_changed_by", "gate_policy_changed_at",
                            "golden_set_changed_by", "golden_set_changed_at"]
        extra_kwargs = {"description": {"max_length": MAX_DESCRIPTION}}

    def get_default_golden_set(self, obj) -> int | None:
        return obj.default_golden_set.number if obj.default_golden_set else None

    def get_aliases(self, obj) -> dict[str, int]:
        # A listing prefetches them with their versions (registry.api.views); a model just written has not.
        prefetched = "aliases" in getattr(obj, "_prefetched_objects_cache", {})
        aliases = obj.aliases.all() if prefetched else obj.aliases.select_related("version")
        return {a.name: a.version.number for a in aliases}

    def validate_class_labels(self, value):
        if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
            raise serializers.ValidationError("class_labels must be a JSON list of strings")
        if len(value) > MAX_CLASS_LABELS:
            raise serializers.ValidationError(f"at most {MAX_CLASS_LABELS} class labels, not {len(value)}")
        if any(len(label) > MAX_LABEL for label in value):
            raise serializers.ValidationError(f"a class label is at most {MAX_LABEL} characters")
        if untrusted_json.has_nul(value):
            raise serializers.ValidationError(f"a class label {NUL_MESSAGE}")
        return value

    def validate_slo(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError('slo must be a JSON object, e.g. {"availability": 0.999, '
                                              '"latency_p95_ms": 250}')
        unknown = sorted(set(value) - {"availability", "latency_p95_ms"})
        if unknown:
            raise serializers.ValidationError(f"unknown SLO fields {unknown[:5]}; use availability, latency_p95_ms")
        availability = value.get("availability", 0.999)
        if not untrusted_json.is_number(availability) or not 0 < availability < 1:
            raise serializers.ValidationError("availability must be a number between 0 and 1, e.g. 0.999")
        latency = value.get("latency_p95_ms", 250)
        if not untrusted_json.is_number(latency) or not 0 < latency <= MAX_LATENCY_MS:
            raise serializers.ValidationError(f"latency_p95_ms must be a number of milliseconds, 0 < ms <= "
                                              f"{MAX_LATENCY_MS}")
        return value

    def validate_notification_webhook(self, value):
        # The rule lives beside delivery, which applies it again (DNS can change); a refusal is a 400
        # with code webhook_url_refused.
        from rollouts.notifications import validate_webhook_url

        return validate_webhook_url(_require_http_url(value)) if value else value


class _FieldsBuiltOncePerClass:
    """A ModelSerializer derives its fields from the model's on every instance (about a millisecond for a
    version, a third of its rendering); a read-only serializer's fields depend on its class alone, so they are
    built once per class and each instance gets its own copy (fields are bound to their serializer)."""

    def get_fields(self):
        built = type(self).__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            type(self)._built_fields = built
        return copy.deepcopy(built)


class ModelVersionSerializer(_FieldsBuiltOncePerClass, serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    digest = serializers.CharField(read_only=True)
    size = serializers.IntegerField(read_only=True)
    parent = serializers.SerializerMethodField()
    # Text, not a URL field: a version registered without one has "", which is no URI.
    ci_run_url = serializers.CharField(read_only=True, help_text="the CI run that built it (http/https), or empty")
    created_by = serializers.StringRelatedField(allow_null=True)
    aliases = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    links = serializers.SerializerMethodField()
    controls = serializers.SerializerMethodField(help_text="what an approver may do to it now")

    class Meta:
        model = ModelVersion
        fields = ["model", "number", "status", "controls", "status_reason", "format", "artifact_name", "digest", "size",
                  "input_signature", "output_signature", "graph_info", "git_commit", "ci_run_url",
                  "training_data_digest", "parent", "derivation", "tags", "signature_source", "signer",
                  "signing_key_id", "aliases", "created_at", "created_by", "links"]
        read_only_fields = fields

    def get_parent(self, obj) -> int | None:
        return obj.parent.number if obj.parent_id else None

    def get_controls(self, obj) -> list[str]:
        return sorted(CONTROLS[obj.status])

    def get_links(self, obj) -> dict[str, str]:
        base = f"/api/v1/models/{obj.model.name}/versions/{obj.number}/"
        return {"self": base} | {name: base + name for name in ("artifact", "signature", "verify", "gates")}


class ModelVersionSummarySerializer(ModelVersionSerializer):
    """A version in a listing: the same fields, with signatures and graph info cut to a bounded summary.

    A graph's declared names, shapes and opset domains are whatever its
    exporter wrote, of any length and number; a listing of fifty versions
    must stay small whatever they hold. `truncated` says whether anything was
    cut; the version's own endpoint (`links.self`) has all of it.
    """

    input_signature = serializers.SerializerMethodField()
    output_signature = serializers.SerializerMethodField()
    graph_info = serializers.SerializerMethodField()
    status_reason = serializers.SerializerMethodField()
    truncated = serializers.SerializerMethodField()

    class Meta(ModelVersionSerializer.Meta):
        fields = ModelVersionSerializer.Meta.fields + ["truncated"]
        read_only_fields = fields

    def get_input_signature(self, obj) -> list:
        return _tensors_summary(obj.input_signature)

    def get_output_signature(self, obj) -> list:
        return _tensors_summary(obj.output_signature)

    def get_graph_info(self, obj) -> dict:
        info = obj.graph_info if isinstance(obj.graph_info, dict) else {}
        opsets = info.get("opsets") if isinstance(info.get("opsets"), dict) else {}
        summary = {"opsets": {_clip(domain): version for domain, version in list(opsets.items())[:LISTED_OPSETS]}}
        if _is_whole(info.get("ir_version")):
            summary["ir_version"] = info["ir_version"]
        return summary

    def get_status_reason(self, obj) -> str:
        return obj.status_reason[:LISTED_REASON]

    def get_truncated(self, obj) -> bool:
        summarized = {"input_signature": self.get_input_signature(obj),
                      "output_signature": self.get_output_signature(obj),
                      "status_reason": self.get_status_reason(obj)}
        full = {"input_signature": obj.input_signature, "output_signature": obj.output_signature,
                "status_reason": obj.status_reason}
        info = obj.graph_info if isinstance(obj.graph_info, dict) else {}
        # graph_info's other entries (declared_signature, parity) are left out of listings on purpose.
        return summarized != full or self.get_graph_info(obj)["opsets"] != info.get("opsets", {})


def _clip(value, limit: int = LISTED_NAME):
    return value[:limit] if isinstance(value, str) else value


def _tensors_summary(tensors) -> list[dict]:
    if not isinstance(tensors, list):
        return []
    summary = []
    for tensor in tensors[:LISTED_TENSORS]:
        tensor = tensor if isinstance(tensor, dict) else {}
        shape = tensor.get("shape")
        summary.append({"name": _clip(tensor.get("name")), "dtype": _clip(tensor.get("dtype"), 32),
                        "shape": [_clip(dim, 32) for dim in shape[:LISTED_DIMS]] if isinstance(shape, list)
                        else None})
    return summary


class JSONTextField(ClientJSONField):
    """JSON that arrives as text in a multipart form, or already parsed in a JSON body."""

    def to_internal_value(self, data):
        if isinstance(data, (str, bytes)):
            try:
                value = untrusted_json.loads(data)
            except ValueError as exc:
                raise serializers.ValidationError(f"not valid JSON: {exc}") from None
        else:
            value = super().to_internal_value(data)
        if untrusted_json.has_nul(value):
            raise serializers.ValidationError(NUL_MESSAGE)
        return value


def upload_metadata(raw) -> dict:
    """The optional `metadata` part of an upload: a JSON object of VersionUpload fields."""
    if raw in (None, ""):
        return {}
    try:
        value = untrusted_json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError as exc:
        raise serializers.ValidationError({"metadata": f"not valid JSON: {exc}"}) from None
    if not isinstance(value, dict):
        raise serializers.ValidationError({"metadata": "must be a JSON object of upload fields"})
    return value


class VersionUploadSerializer(serializers.Serializer):
    """The non-file fields of `POST models/{name}/versions/` (multipart)."""

    format = serializers.ChoiceField(choices=["onnx", "pt2"], default="onnx")
    sha256 = serializers.RegexField(r"^(sha256:)?[0-9a-fA-F]{64}$", required=False,
                                    help_text="the digest the client computed; a mismatch stores nothing")
    git_commit = serializers.RegexField(r"^[0-9a-fA-F]{7,64}$", required=False, allow_blank=True)
    ci_run_url = serializers.URLField(required=False, allow_blank=True, max_length=500,
                                      validators=[_require_http_url])
    training_data_digest = serializers.CharField(required=False, allow_blank=True, max_length=128)
    tags = JSONTextField(required=False, help_text='{"key": "value"}: strings, numbers, booleans')
    parent = serializers.IntegerField(required=False, min_value=1, max_value=MAX_VERSION_NUMBER)
    declared_signature = JSONTextField(required=False, help_text='{"inputs": [{"name", "dtype", "shape"}], '
                                                                 '"outputs": [...]}')

    def validate_tags(self, value):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise serializers.ValidationError("tags must be a JSON object of string keys")
        if len(value) > MAX_TAGS:
            raise serializers.ValidationError(f"at most {MAX_TAGS} tags, not {len(value)}")
        for key, tag in value.items():
            if not 0 < len(key) <= MAX_TAG_KEY:
                raise serializers.ValidationError(f"a tag key is 1 to {MAX_TAG_KEY} characters")
            if not (tag is None or isinstance(tag, (str, bool)) or untrusted_json.is_number(tag)):
                raise serializers.ValidationError(f"tag {key[:40]!r} must be a string, number or boolean")
            if isinstance(tag, str) and len(tag) > MAX_TAG_VALUE:
                raise serializers.ValidationError(f"tag {key[:40]!r} is over {MAX_TAG_VALUE} characters")
        return value

    def validate_declared_signature(self, value):
        if not isinstance(value, dict) or not value or not {"inputs", "outputs"} >= set(value):
            raise serializers.ValidationError("declared_signature must be {'inputs': [...], 'outputs': [...]}")
        for kind, tensors in value.items():
            _check_declared_tensors(kind, tensors)
        return value


def _check_declared_tensors(kind: str, tensors) -> None:
    """What the validation gate compares with the graph: [{"name", "dtype", "shape": [int | str | null]}]."""
    if not isinstance(tensors, list) or len(tensors) > MAX_SIGNATURE_TENSORS:
        raise serializers.ValidationError(f"declared_signature.{kind} must be a list of at most "
                                          f"{MAX_SIGNATURE_TENSORS} tensors")
    for index, tensor in enumerate(tensors):
        where = f"declared_signature.{kind}[{index}]"
        if not isinstance(tensor, dict) or not {"name", "dtype", "shape"} >= set(tensor):
            raise serializers.ValidationError(f"{where} must be an object of name, dtype and shape")
        for key, limit in (("name", MAX_TENSOR_NAME), ("dtype", 32)):
            if key in tensor and not (isinstance(tensor[key], str) and len(tensor[key]) <= limit):
                raise serializers.ValidationError(f"{where}.{key} must be a string of at most {limit} characters")
        shape = tensor.get("shape")
        if shape is None:
            continue
        if not isinstance(shape, list) or len(shape) > MAX_RANK:
            raise serializers.ValidationError(f"{where}.shape must be a list of at most {MAX_RANK} dimensions")
        for dim in shape:
            if not (dim is None or (_is_whole(dim) and 0 <= dim < 2**63) or (isinstance(dim, str) and len(dim) <= 64)):
                raise serializers.ValidationError(f"{where}.shape holds sizes (whole numbers >= 0), names of "
                                                  "dynamic dimensions, or null")


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_REASON, allow_blank=True, required=False, default="")


class GatePolicyChangeSerializer(ReasonSerializer):
    """`PUT models/{name}/gate-policy`: the new overrides (replacing the old) and why; an empty reason is a
    400 `reason_required`, a policy without the organisation's minimum gates a 400 `policy_below_floor`."""

    gate_policy = ClientJSONField()

    def validate_gate_policy(self, value):
        # Imported here: the gates package loads onnxruntime, which only writes of a policy need.
        from controlplane.errors import InvalidInput
        from workers.gates.policy import resolve_gate_policy

        if not isinstance(value, dict):
            raise serializers.ValidationError("gate_policy must be a JSON object of overrides")
        try:
            resolve_gate_policy(value)  # the same check the gates apply: a typo must not loosen a gate later
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.detail) from None
        return value


class DefaultGoldenSetChangeSerializer(ReasonSerializer):
    """`PUT models/{name}/default-golden-set`: which of the model's golden sets its gate judges by, and why."""

    number = serializers.IntegerField(min_value=1, max_value=MAX_VERSION_NUMBER)


class GoldenSetUploadSerializer(ReasonSerializer):
    """The non-file fields of `POST models/{name}/golden-sets/` (multipart, file part `golden_set`).

    A new set is only stored unless `make_default`: making it the default needs `approver` and a reason.
    """

    description = serializers.CharField(max_length=MAX_DESCRIPTION, allow_blank=True, required=False, default="")
    make_default = serializers.BooleanField(required=False, default=False)


class AliasSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number")

    class Meta:
        model = Alias
        fields = ["name", "version", "updated_at"]


class AliasMoveRequestSerializer(serializers.Serializer):
    """`PUT models/{name}/aliases/{alias}`; the alias's name comes from the URL (context `alias`)."""

    version = serializers.IntegerField(min_value=1, max_value=MAX_VERSION_NUMBER)
    reason = serializers.CharField(max_length=MAX_REASON, allow_blank=True, required=False, default="")

    def validate(self, attrs):
        try:
            model_name_validator(self.context["alias"])
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"alias": exc.messages}) from None
        return attrs


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
        fields = ["gate", "position", "verdict", "summary", "metrics", "evidence", "device", "isolation", "timings", "attempts",
                  "started_at", "finished_at"]


class VerificationSerializer(serializers.Serializer):
    """`GET models/{name}/versions/{number}/verify`: what a successful check found (a failed one is a 409)."""

    ok = serializers.BooleanField()
    digest = serializers.CharField()
    signer = serializers.CharField()
    verified_at = serializers.DateTimeField(help_text="when the stored bytes last hashed to the digest")
    detail = serializers.CharField()


class SigningKeySerializer(serializers.Serializer):
    key_id = serializers.CharField(help_text="sha256 of the PEM; the `hint` in model-signing bundles")
    name = serializers.CharField()
    active = serializers.BooleanField()
    pem = serializers.CharField()
