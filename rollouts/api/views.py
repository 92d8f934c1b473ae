"""Rollout endpoints: each parses, authorizes, calls one rollouts service, renders."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.api import API_PARSERS, ErrorResponse
from controlplane.errors import Forbidden, InvalidInput
from controlplane.roles import ActionRoles, Role, has_role
from registry import services as registry
from rollouts import services
from rollouts.api import serializers as s
from rollouts.instants import parse_instant
from rollouts.models import Rollout


class RolloutViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Rollout.objects.select_related("model", "version", "stable_version", "created_by").order_by("-id")
    serializer_class = s.RolloutSerializer
    permission_classes = [ActionRoles]
    parser_classes = API_PARSERS
    action_roles = {"create": Role.CI, "promote": Role.ONCALL, "pause": Role.ONCALL, "resume": Role.ONCALL,
                    "abort": Role.ONCALL}
    filterset_fields = {"phase": ["exact"], "model__name": ["exact"]}

    def get_serializer_class(self):
        return s.RolloutDetailSerializer if self.action == "retrieve" else s.RolloutSerializer

    def get_object(self):
        return services.get_rollout(self.kwargs["pk"])

    @extend_schema(request=s.RolloutStartSerializer, responses={201: s.RolloutSerializer})
    def create(self, request):
        body = s.RolloutStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if not data["approval_required"] and not has_role(request.user, Role.ADMIN):
            raise Forbidden("only 'admin' may start a rollout without approval")
        rollout = services.start_rollout(
            registry.get_model(data["model"]), registry.get_version(data["model"], data["version"]),
            actor=request.user, traffic=body.traffic_config() or None, steps=body.step_list(),
            analysis=data.get("analysis"),
            approval_required=data["approval_required"])
        return Response(s.RolloutSerializer(rollout).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.PromoteSerializer, responses=s.RolloutSerializer)
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        body = s.PromoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        rollout = services.promote(self.get_object(), actor=request.user, full=body.validated_data["full"])
        return Response(s.RolloutSerializer(rollout).data)

    @extend_schema(request=s.RolloutReasonSerializer, responses=s.RolloutSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        rollout = services.pause(self.get_object(), actor=request.user, reason=_reason(request))
        return Response(s.RolloutSerializer(rollout).data)

    @extend_schema(request=s.RolloutReasonSerializer, responses=s.RolloutSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        rollout = services.resume(self.get_object(), actor=request.user, reason=_reason(request))
        return Response(s.RolloutSerializer(rollout).data)

    @extend_schema(request=s.RolloutReasonSerializer, responses=s.RolloutSerializer)
    @action(detail=True, methods=["post"])
    def abort(self, request, pk=None):
        rollout = services.abort(self.get_object(), actor=request.user, reason=_reason(request))
        return Response(s.RolloutSerializer(rollout).data)


class RollbackView(APIView):
    """POST models/{name}/rollback {reason}: roll the model back now (on-call)."""

    permission_classes = [ActionRoles]
    parser_classes = API_PARSERS
    action_roles = {"post": Role.ONCALL}

    def initial(self, request, *args, **kwargs):
        self.action = request.method.lower()
        super().initial(request, *args, **kwargs)

    @extend_schema(request=s.RolloutReasonSerializer, responses={202: s.RolloutSerializer})
    def post(self, request, name):
        rollout = services.rollback(registry.get_model(name), reason=_reason(request), actor=request.user)
        return Response(s.RolloutSerializer(rollout).data, status=status.HTTP_202_ACCEPTED)


# What `_int_param` accepts (below).
_INT_PARAM_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}


class AnalysisReplayView(APIView):
    """GET models/{name}/analysis?at=...: the rollout checks replayed at a past instant."""

    @extend_schema(parameters=[OpenApiParameter("at", OpenApiTypes.DATETIME, required=True,
                                               description="ISO 8601 instant; one without a zone is UTC"),
                               *(OpenApiParameter(name, _INT_PARAM_SCHEMA)
                                 for name in ("canary_version", "stable_version", "step_duration_s"))],
                   responses={200: OpenApiTypes.OBJECT,
                              503: ErrorResponse("Prometheus did not answer: metrics_unavailable")})
    def get(self, request, name):
        report = services.replay_analysis(
            registry.get_model(name), parse_instant(request.query_params.get("at")),
            canary_version=_int_param(request, "canary_version"), stable_version=_int_param(request, "stable_version"),
            step_duration_s=_int_param(request, "step_duration_s"))
        return Response(report.evidence())


# Version numbers' column type; as seconds, longer than any step yet a window that datetime arithmetic survives.
_MAX_INT_PARAM = 2**31 - 1


def _int_param(request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= _MAX_INT_PARAM:
        raise InvalidInput(f"'{name}' must be a whole number from 0 to {_MAX_INT_PARAM}", code="invalid_input")
    return value


def _reason(request) -> str:
    body = s.RolloutReasonSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    return body.validated_data["reason"]
