"""One place that turns errors into API responses: `{"code", "detail"}` JSON.

Domain errors carry their own code and status; DRF's and Django's own errors
are given stable codes. Django's error handlers (`handler400`, `handler403`,
`handler404`, `handler500` in controlplane/urls.py) come here too: under
/api/ they answer JSON, everywhere else the web UI's HTML pages. Anything
unexpected is logged by Django (logger `django.request`, with the traceback)
and answered with a generic 500 body that carries no trace of it.
"""

import codecs
import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, JsonResponse
from django.views import defaults
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions as drf
from rest_framework import parsers, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from controlplane import untrusted_json
from controlplane.errors import BadRequest, Forbidden, InternalError, MlcpError, NotFound, PayloadTooLarge

log = logging.getLogger(__name__)
API_PREFIX = "/api/"

_DRF_CODES = {
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "authentication_failed",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.ParseError: "malformed_request",
    drf.ValidationError: "invalid_input",
    drf.Throttled: "throttled",
}


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every error raised in an API view, as `{"code", "detail"}`.

    Returns None for anything unexpected: DRF re-raises it and Django's
    handler500 (`server_error` below) answers.
    """
    refused = None if isinstance(exc, MlcpError) else _from_django(exc)
    if refused is not None:
        # Django would have logged these to django.security; DRF caught them first.
        log.warning("refused an API request: %s: %s", type(exc).__name__, exc)
        exc = refused
    if isinstance(exc, MlcpError):
        return Response(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, drf.ValidationError):
        body = {"code": code, "detail": _flatten(exc.detail), "fields": exc.detail}
    else:
        body = {"code": code, "detail": str(exc.detail)}
    response.data = body
    return response


def _from_django(exc) -> MlcpError | None:
    """Django's refusals of a request (raised lazily, when the body is first read) as domain errors."""
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(f"the request's form fields exceed {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes; "
                               "send large content as a file part", limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return BadRequest("the request has too many form fields or file parts", code="too_many_fields")
    if isinstance(exc, SuspiciousOperation):
        # Django's message can name internals (a setting, the Host header it refused): keep it in the log.
        return BadRequest("the request was refused as malformed")
    return None


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing as a 400 what would otherwise fail later as a 500.

    `untrusted_json.loads` says what: NaN and Infinity (DRF's strict mode catches
    the literals, not 1e999), nesting deeper than any mlcp value (json.loads
    raises RecursionError a few thousand levels deep, and DRF re-encodes
    JSONField values deeper in the stack).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return untrusted_json.loads(codecs.getreader(encoding)(stream).read())
        except ValueError as exc:  # UnicodeDecodeError is one
            raise drf.ParseError(f"JSON parse error - {exc}") from None


class ClientJSONField(serializers.JSONField):
    """DRF's JSONField decoding with `untrusted_json`'s refusals.

    A JSON body is checked by the parser above, but a form or multipart body hands a JSON field its text,
    which DRF decodes itself with json.loads.
    """

    def __init__(self, **kwargs):
        kwargs["decoder"] = kwargs.get("decoder") or untrusted_json.Decoder
        super().__init__(**kwargs)


# The parsers of every API view that reads a body (DRF's defaults, with the JSON parser above).
API_PARSERS = [JSONParser, parsers.FormParser, parsers.MultiPartParser]


# ------------------------------------------------ Django's error handlers

def is_api_request(request) -> bool:
    return request.path.startswith(API_PREFIX)


def error_response(error: MlcpError) -> JsonResponse:
    """The API's error body for responses made outside DRF (Django's handlers, middleware)."""
    return JsonResponse(error.as_dict(), status=error.http_status)


def bad_request(request, exception):
    if not is_api_request(request):
        return defaults.bad_request(request, exception)
    return error_response(_from_django(exception) or BadRequest("the request was refused as malformed"))


def permission_denied(request, exception):
    if not is_api_request(request):
        return defaults.permission_denied(request, exception)
    return error_response(Forbidden("you may not do this"))


def page_not_found(request, exception):
    if not is_api_request(request):
        return defaults.page_not_found(request, exception)
    return error_response(NotFound(f"no API endpoint at {request.path[:200]}; see /api/docs/"))


def server_error(request):
    if not is_api_request(request):
        return defaults.server_error(request)
    return error_response(InternalError("the server failed while handling this request; the error was logged"))



# ------------------------------------------------ the error body in the OpenAPI schema

# What every error under /api/ answers (`MlcpError.as_dict`, `exception_handler` above): the schema component
# `Error`, which `document_errors` adds to the schema and attaches to every operation.
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error the API answers: a stable `code` to switch on and a `detail` for people.",
    "properties": {
        "code": {"type": "string", "description": "stable and machine-readable, e.g. invalid_input, "
                                                  "not_authenticated, permission_denied, not_found, conflict"},
        "detail": {"type": "string", "description": "what went wrong, for people"},
        "context": {"type": "object", "additionalProperties": {},
                    "description": "what the error is about (a setting, a limit, a digest), by name"},
        "fields": {"anyOf": [{"type": "object", "additionalProperties": {}}, {"type": "array", "items": {}}],
                   "description": "with invalid_input: the messages of each field refused"},
    },
    "required": ["code", "detail"],
    "additionalProperties": False,
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}

# The errors any endpoint may answer, and the codes each status carries.
COMMON_ERRORS = {
    "400": "The request is malformed or a field is invalid: invalid_input (with `fields`), malformed_request, "
           "bad_request, or a more specific code of the endpoint.",
    "401": "No valid credentials: not_authenticated, authentication_failed.",
    "403": "The token's role may not do this: permission_denied, or a more specific code of the endpoint.",
    "404": "No such object or endpoint: not_found.",
    "405": "The endpoint does not answer this method: method_not_allowed.",
    "406": "No representation the client accepts: not_acceptable.",
    "409": "The object's state forbids this now: conflict, illegal_transition, integrity_failure, or a more "
           "specific code of the endpoint.",
    "413": "The request body is over the server's limits: payload_too_large.",
    "415": "The body's media type is not one the endpoint reads: unsupported_media_type.",
}


def ErrorResponse(description: str) -> OpenApiResponse:  # noqa: N802  (used like a class in extend_schema)
    """An error an endpoint answers beyond COMMON_ERRORS, for its `extend_schema(responses=...)`."""
    return OpenApiResponse(response=ERROR_REF, description=description)


def document_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: the `Error` component, and COMMON_ERRORS on every operation
    that does not document that status itself."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, description in COMMON_ERRORS.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": ERROR_REF}}})
    return result
