"""On-call endpoints: the Alertmanager receiver and a model's runbook policy; each calls one oncall service."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.api import JSONParser
from controlplane.errors import InvalidInput
from controlplane.roles import ActionRoles, Role
from controlplane.tokens import ApiTokenAuthentication
from oncall import services
from oncall.alertmanager import parse_notification
from oncall.api import serializers as s
from oncall.models import RunbookPolicy
from registry import services as registry


class BearerTokenAuthentication(ApiTokenAuthentication):
    """`Authorization: Bearer <key>`: what Alertmanager's `http_config.authorization` sends by default."""

    keyword = "Bearer"


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """The receiver's bearer scheme in the OpenAPI schema, apart from the `Token` scheme of every other endpoint."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "an API token of a user with the oncall role"}


class _MethodRoles(APIView):
    permission_classes = [ActionRoles]

    def initial(self, request, *args, **kwargs):
        self.action = request.method.lower()
        super().initial(request, *args, **kwargs)


class AlertmanagerReceiverView(_MethodRoles):
    """POST alerts/alertmanager: Alertmanager's webhook (an `oncall` token); each alert acts by its model's policy.

    Answers 200 with what became of each alert, also when an alert names no
    registered model: Alertmanager retries anything else, and a retry cannot
    make the model exist, and when handling one alert fails (recorded as `failed`; the others are handled). A
    malformed notification is a 400 and changes nothing.
    """

    authentication_classes = [ApiTokenAuthentication, BearerTokenAuthentication]
    parser_classes = [JSONParser]
    action_roles = {"post": Role.ONCALL}

    @extend_schema(request=s.AlertmanagerNotificationSerializer, responses={200: s.ReceiverAnswerSerializer})
    def post(self, request):
        handled = services.handle_notification(parse_notification(request.data), actor=request.user)
        return Response({"handled": [h.as_dict() for h in handled]})


class RunbookPolicyView(_MethodRoles):
    """GET/PUT models/{name}/runbook-policy: what alerts do to the model; changed by approver or admin, with a reason."""

    parser_classes = [JSONParser]
    action_roles = {"get": Role.VIEWER, "put": Role.APPROVER}

    @extend_schema(responses=s.RunbookPolicySerializer)
    def get(self, request, name):
        return Response(_policy_body(registry.get_model(name)))

    @extend_schema(request=s.RunbookPolicyChangeSerializer, responses=s.RunbookPolicySerializer)
    def put(self, request, name):
        _refuse_unknown_fields(request.data, s.RunbookPolicyChangeSerializer().fields)
        body = s.RunbookPolicyChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        reason = data.pop("reason")
        model = registry.get_model(name)
        services.set_runbook_policy(model, data, actor=request.user, reason=reason)
        return Response(_policy_body(model))


def _refuse_unknown_fields(data, fields) -> None:
    # The serializer would drop them silently, and the policy is replaced whole: a misspelt "dryRun": true
    # would save dry_run false, and alerts would act for real.
    unknown = sorted(set(data) - set(fields)) if isinstance(data, dict) else []
    if unknown:
        # Escaped: a JSON key may hold a lone surrogate, which the JSON answer could not encode.
        named = [key[:64].encode("ascii", "backslashreplace").decode() for key in unknown[:5]]
        raise InvalidInput(f"unknown runbook policy field(s): {', '.join(named)}{', ...' if len(unknown) > 5 else ''}"
                           f"; the fields are {', '.join(fields)}", code="invalid_runbook_policy", unknown=named)


def _policy_body(model) -> dict:
    return {"model": model.name, "configured": RunbookPolicy.objects.filter(model=model).exists(),
            **services.runbook_policy_of(model).to_json()}
