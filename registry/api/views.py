"""Registry endpoints: each parses, authorizes, calls one service, renders."""

import base64
import logging
import re
import unicodedata
from urllib.parse import quote

from django.core.handlers.wsgi import LimitedStream
from django.db import transaction
from django.db.models import Prefetch
from django.db.models.fields.json import KeyTransform
from django.http import StreamingHttpResponse
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.api import API_PARSERS, ErrorResponse, JSONParser
from controlplane.errors import Forbidden, IntegrityFailure, InvalidInput, PayloadTooLarge
from controlplane.roles import ActionRoles, Role, has_role
from registry import services, signing
from registry.api import serializers as s
from registry.choices import GOVERNED_SETTINGS
from registry.models import Alias, AuditEvent, GoldenSet, ModelVersion, RegisteredModel
from registry.storage import default_store
from registry.upload import (BUNDLE_HEADER, FILENAME_HEADER, METADATA_HEADER, StagedUpload, discard_all,
                             read_stream_headers, stage_streamed_body)
from rollouts import services as rollouts
from rollouts.api.serializers import RolloutTargetSerializer

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_TAG_KEY = re.compile(rf"[A-Za-z0-9_.:/-]{{1,{s.MAX_TAG_KEY}}}")
log = logging.getLogger(__name__)


class RegisteredModelViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    # Everything the serializer shows, in two queries for a page of models (or one model), not two or more per model.
    queryset = (RegisteredModel.objects
                .select_related("default_golden_set", "created_by", "gate_policy_changed_by", "golden_set_changed_by")
                .prefetch_related(Prefetch("aliases", queryset=Alias.objects.select_related("version")))
                .order_by("name"))
    serializer_class = s.RegisteredModelSerializer
    lookup_field = "name"
    # What a model's name may hold (as in every other models/{name}/ route): anything else is no model, a 404 from
    # the URL resolver. Without it a NUL byte reached the lookup, a 500 on PostgreSQL.
    lookup_value_regex = r"[a-z0-9-]+"
    permission_classes = [ActionRoles]
    parser_classes = API_PARSERS
    action_roles = {"create": Role.CI, "update": Role.ADMIN, "partial_update": Role.ADMIN,
                    "aliases": Role.VIEWER, "alias_history": Role.VIEWER,
                    # One action per governed setting, named after it.
                    **{setting: governed.role for setting, governed in GOVERNED_SETTINGS.items()}}
    filterset_fields = ["task", "owner"]
    search_fields = ["name"]

    def create(self, request, *args, **kwargs):
        _refuse_governed_settings(request)
        return super().create(request, *args, **kwargs)

    def update(self, request, *args, **kwargs):
        # A body that repeats a setting as shown (a GET sent back with one field changed) changes nothing of it.
        _refuse_governed_settings(request, shown=s.RegisteredModelSerializer(self.get_object()).data)
        return super().update(request, *args, **kwargs)

    def perform_create(self, serializer):
        with transaction.atomic():
            model = serializer.save(created_by=self.request.user)
            services.record_audit(self.request.user, "model.registered", model_name=model.name)

    def perform_update(self, serializer):
        with transaction.atomic():
            model = serializer.save()
            services.record_audit(self.request.user, "model.updated", model_name=model.name,
                                  fields=sorted(serializer.validated_data))

    @extend_schema(request=s.GatePolicyChangeSerializer, responses=s.RegisteredModelSerializer)
    @action(detail=True, methods=["put"], url_path="gate-policy")
    def gate_policy(self, request, name=None):
        body = s.GatePolicyChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        model = services.set_gate_policy(self.get_object(), body.validated_data["gate_policy"], actor=request.user,
                                         reason=body.validated_data["reason"])
        return Response(s.RegisteredModelSerializer(model).data)

    @extend_schema(request=s.DefaultGoldenSetChangeSerializer, responses=s.RegisteredModelSerializer)
    @action(detail=True, methods=["put"], url_path="default-golden-set")
    def default_golden_set(self, request, name=None):
        body = s.DefaultGoldenSetChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        model = services.set_default_golden_set(self.get_object(), body.validated_data["number"],
                                                actor=request.user, reason=body.validated_data["reason"])
        return Response(s.RegisteredModelSerializer(model).data)

    @extend_schema(request=RolloutTargetSerializer, responses=s.RegisteredModelSerializer)
    @action(detail=True, methods=["put"], url_path="target")
    def rollout_target(self, request, name=None):
        """Where this model's rollouts go; the rule that they go nowhere else is `rollouts.services`'."""
        body = RolloutTargetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        model = rollouts.set_rollout_target(self.get_object(), body.traffic_config(), actor=request.user,
                                            reason=body.validated_data["reason"])
        return Response(s.RegisteredModelSerializer(model).data)

    @extend_schema(responses=s.AliasSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def aliases(self, request, name=None):
        # One query on the hot path: the aliases by their model's name. Only a model with none is looked up,
        # so that a name no model has stays a 404.
        aliases = list(Alias.objects.filter(model__name=name).select_related("version"))
        if not aliases:
            self.get_object()
        return Response(s.AliasSerializer(aliases, many=True).data)

    @extend_schema(responses=s.AliasMoveSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="alias-history", pagination_class=None)
    def alias_history(self, request, name=None):
        model = self.get_object()
        return Response(s.AliasMoveSerializer(model.alias_moves.select_related("from_version", "to_version")[:200],
                                              many=True).data)


def _require_governing_role(user, setting: str) -> None:
    governed = GOVERNED_SETTINGS[setting]
    if not has_role(user, governed.role):
        raise Forbidden(f"a model's {setting} is changed only by '{governed.role}' or 'admin', with a reason "
                        f"(PUT models/{{name}}/{governed.endpoint})", setting=setting)


def _refuse_governed_settings(request, shown: dict | None = None) -> None:
    """A model's create or update never changes a governed setting: 403 without its role, else 400 naming
    the endpoint that changes it with a reason (a `ci` model starts on the default policy)."""
    if not isinstance(request.data, dict):
        return  # the serializer refuses a body that is not an object
    for setting, governed in GOVERNED_SETTINGS.items():
        if setting in request.data and (shown is None or request.data[setting] != shown.get(setting)):
            _require_governing_role(request.user, setting)
            raise InvalidInput(f"'{setting}' is not changed with the model: PUT models/{{name}}/{governed.endpoint} "
                               "with a reason", code="governed_setting", setting=setting)


class AliasView(APIView):
    """PUT moves an alias. `production` is the controller's; moving it by hand needs `admin`."""

    permission_classes = [ActionRoles]
    parser_classes = API_PARSERS
    action_roles = {"put": Role.CI}

    def initial(self, request, *args, **kwargs):
        self.action = request.method.lower()
        super().initial(request, *args, **kwargs)

    @extend_schema(request=s.AliasMoveRequestSerializer, responses=s.AliasSerializer)
    def put(self, request, name, alias):
        body = s.AliasMoveRequestSerializer(data=request.data, context={"alias": alias})
        body.is_valid(raise_exception=True)
        if alias == "production" and not has_role(request.user, Role.ADMIN):
            raise Forbidden("the production alias is moved by rollouts; moving it by hand needs 'admin'")
        model = services.get_model(name)
        version = services.get_version(name, body.validated_data["version"])
        moved = services.move_alias(model, alias, version, actor=request.user, reason=body.validated_data["reason"])
        return Response(s.AliasSerializer(moved).data)


class VersionFilter(filters.FilterSet):
    tag = filters.CharFilter(method="filter_tag", help_text="key=value")

    class Meta:
        model = ModelVersion
        fields = ["status", "format", "git_commit"]

    def filter_tag(self, queryset, name, value):
        key, separator, wanted = value.partition("=")
        if not separator or not _TAG_KEY.fullmatch(key) or len(wanted) > s.MAX_TAG_VALUE:
            raise InvalidInput(f"a tag filter is KEY=VALUE: a key of 1 to {s.MAX_TAG_KEY} letters, digits or "
                               f"'_.:/-', a value of at most {s.MAX_TAG_VALUE} characters")
        # The key as one literal JSON key: spliced into `tags__<key>`, "a__regex" would become a lookup.
        return queryset.alias(_tag=KeyTransform(key, "tags")).filter(_tag=wanted)


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = ModelVersion.objects.none()  # the real one depends on the URL; this tells the schema the model
    serializer_class = s.ModelVersionSerializer
    lookup_field = "number"
    lookup_value_regex = r"\d+"
    permission_classes = [ActionRoles]
    action_roles = {"create": Role.CI, "approve": Role.APPROVER, "reject": Role.APPROVER,
                    "artifact": Role.VIEWER, "signature": Role.VIEWER, "verify": Role.VIEWER,
                    "gates": Role.VIEWER, "run_gates": Role.CI, "stream_upload": Role.CI}
    filterset_class = VersionFilter
    parser_classes = [MultiPartParser, JSONParser]

    def get_serializer_class(self):
        return s.ModelVersionSummarySerializer if self.action == "list" else s.ModelVersionSerializer

    def get_queryset(self):
        return (ModelVersion.objects.filter(model__name=self.kwargs["model_name"])
                .select_related("model", "blob", "parent", "created_by").prefetch_related("aliases")
                .order_by("-number"))

    def get_object(self):
        return services.get_version(self.kwargs["model_name"], int(self.kwargs["number"]))

    def retrieve(self, request, *args, **kwargs):
        # The listing's query: the version with its model, blob, parent and uploader, and its aliases, in two
        # queries, where get_object() (the write actions' lookup) would leave the serializer three more.
        try:
            version = self.get_queryset().get(number=int(self.kwargs["number"]))
        except ModelVersion.DoesNotExist:
            version = self.get_object()  # raises the registry's own 404
        return Response(self.get_serializer(version).data)

    def list(self, request, *args, **kwargs):
        services.get_model(self.kwargs["model_name"])
        return super().list(request, *args, **kwargs)

    @extend_schema(request={"multipart/form-data": {"type": "object", "properties": {
        "artifact": {"type": "string", "format": "binary"},
        "bundle": {"type": "string", "format": "binary"},
        "metadata": {"type": "string", "description": "JSON of VersionUpload fields"}}, "required": ["artifact"]}},
        responses={201: s.ModelVersionSerializer})
    def create(self, request, model_name=None):
        """Register a version: a streamed multipart upload of `artifact` (+ optional `bundle`)."""
        try:
            model = services.get_model(model_name)
            files = request.FILES
            artifact = files.get("artifact")
            if not isinstance(artifact, StagedUpload):
                raise InvalidInput("the upload needs a file part named 'artifact'", code="missing_artifact")
            _require_whole_body(request)
            fields = dict(s.upload_metadata(request.data.get("metadata")))
            fields.update({k: v for k, v in request.data.items() if k not in ("metadata", "artifact", "bundle")})
            meta, declared_digest = _version_metadata(fields)
            bundle = files.get("bundle")
            bundle_json = bundle.read_small(services.MAX_BUNDLE_BYTES).decode("utf-8", "replace") if bundle else None
            version = services.ingest_version(model, artifact.staged, safe_filename(artifact.name), meta,
                                              actor=request.user, declared_digest=declared_digest,
                                              bundle_json=bundle_json)
        finally:
            discard_all(getattr(request._request, "mlcp_staged_blobs", []))
        return Response(s.ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request={"application/octet-stream": {"type": "string", "format": "binary"}},
        parameters=[
            OpenApiParameter(METADATA_HEADER, str, OpenApiParameter.HEADER,
                             description="JSON object of VersionUpload fields (format, sha256, tags, ...)"),
            OpenApiParameter(FILENAME_HEADER, str, OpenApiParameter.HEADER,
                             description="the artifact's file name, percent-encoded UTF-8"),
            OpenApiParameter(BUNDLE_HEADER, str, OpenApiParameter.HEADER,
                             description="a model-signing bundle made by CI, base64 of its JSON")],
        responses={201: s.ModelVersionSerializer,
                   411: ErrorResponse("no Content-Length (or a chunked body): length_required"),
                   413: ErrorResponse("Content-Length over MLCP_MAX_UPLOAD_BYTES: payload_too_large"),
                   415: ErrorResponse("a body that is not application/octet-stream: unsupported_media_type"),
                   507: ErrorResponse("the artifact store is full: storage_full")})
    @action(detail=False, methods=["put"], url_path="stream")
    def stream_upload(self, request, model_name=None):
        """Register a version from the artifact's bytes as the body: no multipart parsing, hashed as it arrives.

        The body is the artifact as application/octet-stream with its
        Content-Length (at most MLCP_MAX_UPLOAD_BYTES); the metadata is in
        headers. They are checked, and the model looked up, before a byte is
        read; then as the multipart upload: same validation, signing,
        deduplication and audit. A body that ends early stores nothing
        (upload_interrupted). What the CLI's `mlcp push` uses.
        """
        model = services.get_model(model_name)
        headers = read_stream_headers(request.META, request.content_type)
        meta, declared_digest = _version_metadata(headers.fields)
        if headers.bundle_json is not None and len(headers.bundle_json) > services.MAX_BUNDLE_BYTES:
            raise PayloadTooLarge(f"'{BUNDLE_HEADER}' is larger than {services.MAX_BUNDLE_BYTES} bytes")
        staged = stage_streamed_body(request._request, headers.length)
        version = services.ingest_version(model, staged, safe_filename(headers.filename), meta, actor=request.user,
                                          declared_digest=declared_digest, bundle_json=headers.bundle_json)
        return Response(s.ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ReasonSerializer, responses=s.ModelVersionSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, model_name=None, number=None):
        body = s.ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = services.approve_version(self.get_object(), actor=request.user, reason=body.validated_data["reason"])
        return Response(s.ModelVersionSerializer(version).data)

    @extend_schema(request=s.ReasonSerializer, responses=s.ModelVersionSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, model_name=None, number=None):
        body = s.ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = services.reject_version(self.get_object(), actor=request.user, reason=body.validated_data["reason"])
        return Response(s.ModelVersionSerializer(version).data)

    @extend_schema(responses=s.GateResultSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def gates(self, request, model_name=None, number=None):
        version = self.get_object()
        return Response(s.GateResultSerializer(version.gate_results.order_by("position"), many=True).data)

    @extend_schema(request=None, responses={202: s.ModelVersionSerializer})
    @action(detail=True, methods=["post"], url_path="gates/run")
    def run_gates(self, request, model_name=None, number=None):
        """Queue the gates again for a version whose gate errored; decided gates keep their verdicts."""
        version = services.request_gates(self.get_object(), actor=request.user)
        return Response(s.ModelVersionSerializer(version).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "application/json"): OpenApiResponse(
        OpenApiTypes.OBJECT, description="the version's model-signing (Sigstore) bundle, as a download")})
    @action(detail=True, methods=["get"])
    def signature(self, request, model_name=None, number=None):
        version = self.get_object()
        response = StreamingHttpResponse([version.signature_bundle.encode()], content_type="application/json")
        response["Content-Disposition"] = attachment_header(f"{version.artifact_name}.sig")
        return response

    @extend_schema(responses={200: s.VerificationSerializer})
    @action(detail=True, methods=["get"])
    def verify(self, request, model_name=None, number=None):
        """Whether the stored bytes match their digest and the signature covers it.

        A check recorded within MLCP_VERIFY_TRUST_S answers for the bytes, so a
        viewer cannot make the server re-read whole artifacts at will;
        `manage.py verifyblobs` re-hashes on demand.
        """
        version = self.get_object()
        services.ensure_intact(version, now=timezone.now())
        verified = signing.verify_bundle(version.signature_bundle, version.digest)
        checked = version.blob.verified_at
        return Response({"ok": True, "digest": version.digest, "signer": verified.signer, "verified_at": checked,
                         "detail": f"{version} verifies: its bytes hashed to its digest at "
                                   f"{checked:%Y-%m-%d %H:%M:%S} UTC and the signature covers it"})

    @extend_schema(
        parameters=[OpenApiParameter("Range", str, OpenApiParameter.HEADER,
                                     description="one range of bytes: bytes=START-END, bytes=START- or bytes=-SUFFIX")],
        responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="the artifact"),
                   (206, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY,
                                                                      description="the bytes of the Range asked"),
                   416: ErrorResponse("the Range starts past the artifact's end: range_not_satisfiable")})
    @action(detail=True, methods=["get"])
    def artifact(self, request, model_name=None, number=None):
        """Streams the artifact (Range supported); bytes found altered are refused, never served whole.

        A full download is hashed as it streams and fails closed. A Range
        request trusts a check recorded within MLCP_VERIFY_TRUST_S and
        re-hashes once otherwise: one byte must not cost a read of the whole blob.
        """
        version = self.get_object()
        if version.blob.is_tampered:
            raise services.tampered_error(version)
        signing.verify_bundle(version.signature_bundle, version.digest)
        return _stream_blob(request, version)


def _version_metadata(fields: dict) -> tuple["services.VersionMetadata", str | None]:
    """An upload's metadata fields, validated: the version's metadata and the digest the client declared."""
    meta_in = s.VersionUploadSerializer(data=fields)
    meta_in.is_valid(raise_exception=True)
    data = meta_in.validated_data
    meta = services.VersionMetadata(
        format=data["format"], git_commit=data.get("git_commit", ""), ci_run_url=data.get("ci_run_url", ""),
        training_data_digest=data.get("training_data_digest", ""), tags=data.get("tags"),
        parent_number=data.get("parent"), declared_signature=data.get("declared_signature"),
    )
    return meta, data.get("sha256")


def _require_whole_body(request) -> None:
    """A client that went away mid-upload leaves the body short: store nothing."""
    stream = getattr(request._request, "_stream", None)
    remaining = stream.limit - stream._pos if isinstance(stream, LimitedStream) else 0
    if remaining > 0:
        raise InvalidInput(f"the upload ended {remaining} bytes early; nothing was stored",
                           code="upload_interrupted")


def safe_filename(name: str | None, fallback: str = "model") -> str:
    """An uploaded file's name reduced to something safe to store, show and send back as a filename.

    Path parts (either slash), control and format characters (newlines, bidi
    overrides), unusual spaces, double quotes and `;` are dropped: they are
    how a name breaks out of a Content-Disposition header or passes for
    another file.
    """
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in "CZ" or ch == " ")
    name = "".join(ch for ch in name if ch not in '";').strip(" .")
    return name[:200] or fallback


def attachment_header(filename: str) -> str:
    """`Content-Disposition: attachment` per RFC 6266: an ASCII `filename` for old clients, `filename*` in UTF-8.

    Built from `safe_filename` again even though ingest stores safe names:
    versions registered before that may hold anything.
    """
    name = safe_filename(filename, fallback="download")
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._+ -]", "_", ascii_name).strip()
    if not ascii_name.strip("._") or ascii_name.startswith("."):  # "模型.onnx" must not become a hidden ".onnx"
        ascii_name = "download" + (ascii_name if ascii_name.startswith(".") else "")
    return f'attachment; filename="{ascii_name}"; filename*=UTF-8\'\'{quote(name, safe="")}'


def _stream_blob(request, version):
    size = version.size
    start, end = 0, size - 1
    match = _RANGE.match(request.headers.get("Range", "")) if request.headers.get("Range") else None
    if request.headers.get("Range") and not match:
        raise InvalidInput("unsupported Range header; use bytes=START-END", code="invalid_range")
    if match:
        first, last = match.groups()
        if first == "" and last != "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start = int(first or 0)
            end = min(int(last), size - 1) if last else size - 1
        if start > end or start >= size:
            response = Response({"code": "range_not_satisfiable", "detail": f"the artifact has {size} bytes"},
                                status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
    store = default_store()
    if match:
        services.ensure_intact(version, now=timezone.now(), store=store)
        chunks = store.iter_range(version.digest, start, end)
    else:
        chunks = _stream_verifying(version, store)
    response = StreamingHttpResponse(chunks, status=206 if match else 200, content_type="application/octet-stream")
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = f'"sha256:{version.digest}"'
    response["Digest"] = "sha-256=" + base64.b64encode(bytes.fromhex(version.digest)).decode()
    response["X-Mlcp-Sha256"] = version.digest
    response["Content-Disposition"] = attachment_header(version.artifact_name)
    if match:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response


def _stream_verifying(version, store):
    read_at = timezone.now()
    chunks = store.iter_verified(version.digest)  # opens the blob now: a missing one is a 404, not a broken stream
    return _recording_the_outcome(version, chunks, read_at)


def _recording_the_outcome(version, chunks, read_at):
    # Raising mid-stream is the point: the server aborts the response, so the client
    # gets a short, failed transfer instead of complete wrong bytes.
    try:
        yield from chunks
    except IntegrityFailure as exc:
        version.blob.record_hash(exc.context["actual"], read_at=read_at)
        log.error("%s: download aborted, stored blob sha256:%s now hashes to sha256:%s; marked tampered",
                  version, version.digest, exc.context["actual"])
        raise
    version.blob.record_hash(version.digest, read_at=read_at)


class SigningKeysView(APIView):
    @extend_schema(responses=s.SigningKeySerializer(many=True))
    def get(self, request):
        return Response([{"key_id": k.key_id, "name": k.name, "active": k.active, "pem": k.pem}
                         for k in signing.trusted_keys()])


class GoldenSetViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = GoldenSet.objects.none()
    lookup_value_regex = r"\d+"
    serializer_class = s.GoldenSetSerializer
    lookup_field = "number"
    permission_classes = [ActionRoles]
    action_roles = {"create": Role.CI}
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        return GoldenSet.objects.filter(
            model__name=self.kwargs["model_name"]).select_related("model").order_by("-number")

    @extend_schema(request={"multipart/form-data": {"type": "object", "properties": {
        "golden_set": {"type": "string", "format": "binary", "description": ".npz of inputs, labels, class_names"},
        "description": {"type": "string", "maxLength": s.MAX_DESCRIPTION},
        "make_default": {"type": "boolean", "default": False},
        "reason": {"type": "string", "maxLength": s.MAX_REASON}}, "required": ["golden_set"]}},
        responses={201: s.GoldenSetSerializer})
    def create(self, request, model_name=None):
        try:
            model = services.get_model(model_name)
            upload = request.FILES.get("golden_set")
            if not isinstance(upload, StagedUpload):
                raise InvalidInput("the upload needs a file part named 'golden_set'", code="missing_golden_set")
            _require_whole_body(request)
            fields = s.GoldenSetUploadSerializer(data={k: v for k, v in request.data.items() if k != "golden_set"})
            fields.is_valid(raise_exception=True)
            data = fields.validated_data
            if data["make_default"]:
                _require_governing_role(request.user, "default_golden_set")
            golden = services.register_golden_set(model, upload.staged, actor=request.user,
                                                  description=data["description"], make_default=data["make_default"],
                                                  reason=data["reason"])
        finally:
            discard_all(getattr(request._request, "mlcp_staged_blobs", []))
        return Response(s.GoldenSetSerializer(golden).data, status=status.HTTP_201_CREATED)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = AuditEvent.objects.all()
    serializer_class = s.AuditEventSerializer
    filterset_fields = ["model_name", "action", "actor", "version_number"]
