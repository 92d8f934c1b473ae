"""Registry endpoints: each parses, authorizes, calls one service, renders."""

import base64
import re
import unicodedata
from urllib.parse import quote

from django.core.handlers.wsgi import LimitedStream
from django.db import transaction
from django.db.models.fields.json import KeyTransform
from django.http import StreamingHttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.api import API_PARSERS, JSONParser
from controlplane.errors import Forbidden, IntegrityFailure, InvalidInput
from controlplane.roles import ActionRoles, Role, has_role
from registry import services, signing
from registry.api import serializers as s
from registry.models import AuditEvent, GoldenSet, ModelVersion, RegisteredModel
from registry.storage import default_store
from registry.upload import StagedUpload, discard_all

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RegisteredModelViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = RegisteredModel.objects.select_related("default_golden_set").order_by("name")
    serializer_class = s.RegisteredModelSerializer
    lookup_field = "name"
    permission_classes = [ActionRoles]
    parser_classes = API_PARSERS
    action_roles = {"create": Role.CI, "update": Role.ADMIN, "partial_update": Role.ADMIN,
                    "aliases": Role.VIEWER, "alias_history": Role.VIEWER}
    filterset_fields = ["task", "owner"]
    search_fields = ["name"]

    def perform_create(self, serializer):
        with transaction.atomic():
            model = serializer.save(created_by=self.request.user)
            services.record_audit(self.request.user, "model.registered", model_name=model.name)

    def perform_update(self, serializer):
        with transaction.atomic():
            model = serializer.save()
            services.record_audit(self.request.user, "model.updated", model_name=model.name,
                                  fields=sorted(serializer.validated_data))

    @action(detail=True, methods=["get"])
    def aliases(self, request, name=None):
        model = self.get_object()
        return Response(s.AliasSerializer(model.aliases.select_related("version"), many=True).data)

    @action(detail=True, methods=["get"], url_path="alias-history")
    def alias_history(self, request, name=None):
        model = self.get_object()
        return Response(s.AliasMoveSerializer(model.alias_moves.select_related("from_version", "to_version")[:200],
                                              many=True).data)


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
        key, _, wanted = value.partition("=")
        # The key as one literal JSON key: spliced into `tags__<key>`, "a__contains" would become a lookup.
        return queryset.alias(_tag=KeyTransform(key, "tags")).filter(_tag=wanted)


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = ModelVersion.objects.none()  # the real one depends on the URL; this tells the schema the model
    serializer_class = s.ModelVersionSerializer
    lookup_field = "number"
    lookup_value_regex = r"\d+"
    permission_classes = [ActionRoles]
    action_roles = {"create": Role.CI, "approve": Role.APPROVER, "reject": Role.APPROVER,
                    "artifact": Role.VIEWER, "signature": Role.VIEWER, "verify": Role.VIEWER,
                    "gates": Role.VIEWER, "run_gates": Role.CI}
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

    def list(self, request, *args, **kwargs):
        services.get_model(self.kwargs["model_name"])
        return super().list(request, *args, **kwargs)

    @extend_schema(request={"multipart/form-data": {"type": "object", "properties": {
        "artifact": {"type": "string", "format": "binary"},
        "bundle": {"type": "string", "format": "binary"},
        "metadata": {"type": "string", "description": "JSON of VersionUpload fields"}}}},
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
            meta_in = s.VersionUploadSerializer(data=fields)
            meta_in.is_valid(raise_exception=True)
            data = meta_in.validated_data
            bundle = files.get("bundle")
            bundle_json = bundle.read_small(services.MAX_BUNDLE_BYTES).decode("utf-8", "replace") if bundle else None
            meta = services.VersionMetadata(
                format=data["format"], git_commit=data.get("git_commit", ""), ci_run_url=data.get("ci_run_url", ""),
                training_data_digest=data.get("training_data_digest", ""), tags=data.get("tags"),
                parent_number=data.get("parent"), declared_signature=data.get("declared_signature"),
            )
            version = services.ingest_version(model, artifact.staged, safe_filename(artifact.name), meta,
                                              actor=request.user, declared_digest=data.get("sha256"),
                                              bundle_json=bundle_json)
        finally:
            discard_all(getattr(request._request, "mlcp_staged_blobs", []))
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

    @action(detail=True, methods=["get"])
    def gates(self, request, model_name=None, number=None):
        version = self.get_object()
        return Response(s.GateResultSerializer(version.gate_results.order_by("position"), many=True).data)

    @extend_schema(request=None, responses={202: s.ModelVersionSerializer})
    @action(detail=True, methods=["post"], url_path="gates/run")
    def run_gates(self, request, model_name=None, number=None):
        """Queue the gates again for a version whose gate errored; decided gates keep their verdicts."""
        version = services.request_gates(self.get_object(), actor=request.user)
        return Response(s.ModelVersionSerializer(version).data, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["get"])
    def signature(self, request, model_name=None, number=None):
        version = self.get_object()
        response = StreamingHttpResponse([version.signature_bundle.encode()], content_type="application/json")
        response["Content-Disposition"] = attachment_header(f"{version.artifact_name}.sig")
        return response

    @action(detail=True, methods=["get"])
    def verify(self, request, model_name=None, number=None):
        report = services.verify_version(self.get_object())
        if not report.ok:
            raise IntegrityFailure(report.detail, code="artifact_tampered", digest=report.digest)
        return Response(report.as_dict())

    @action(detail=True, methods=["get"])
    def artifact(self, request, model_name=None, number=None):
        """Streams the artifact (Range supported) after checking it still matches its digest."""
        version = self.get_object()
        report = services.verify_version(version)
        if not report.ok:
            raise IntegrityFailure(report.detail, code="artifact_tampered", digest=report.digest)
        return _stream_blob(request, version)


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
    response = StreamingHttpResponse(default_store().iter_range(version.digest, start, end),
                                     status=206 if match else 200, content_type="application/octet-stream")
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = f'"sha256:{version.digest}"'
    response["Digest"] = "sha-256=" + base64.b64encode(bytes.fromhex(version.digest)).decode()
    response["X-Mlcp-Sha256"] = version.digest
    response["Content-Disposition"] = attachment_header(version.artifact_name)
    if match:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response


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

    def create(self, request, model_name=None):
        try:
            model = services.get_model(model_name)
            upload = request.FILES.get("golden_set")
            if not isinstance(upload, StagedUpload):
                raise InvalidInput("the upload needs a file part named 'golden_set'", code="missing_golden_set")
            _require_whole_body(request)
            fields = s.GoldenSetUploadSerializer(data={k: v for k, v in request.data.items() if k != "golden_set"})
            fields.is_valid(raise_exception=True)
            golden = services.register_golden_set(model, upload.staged, actor=request.user,
                                                  description=fields.validated_data["description"],
                                                  make_default=fields.validated_data["make_default"])
        finally:
            discard_all(getattr(request._request, "mlcp_staged_blobs", []))
        return Response(s.GoldenSetSerializer(golden).data, status=status.HTTP_201_CREATED)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = AuditEvent.objects.all()
    serializer_class = s.AuditEventSerializer
    filterset_fields = ["model_name", "action", "actor", "version_number"]
