"""Domain errors shared by every app.

Each error carries a stable `code` that clients can switch on and the HTTP
status the API maps it to; the mapping to responses lives in one place
(`controlplane.api.exception_handler`).
"""


class MlcpError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, detail: str, *, code: str | None = None, **context):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.context = context

    def as_dict(self) -> dict:
        body = {"code": self.code, "detail": self.detail}
        if self.context:
            body["context"] = self.context
        return body


class InvalidInput(MlcpError):
    code = "invalid_input"
    http_status = 400


class NotFound(MlcpError):
    code = "not_found"
    http_status = 404


class Conflict(MlcpError):
    code = "conflict"
    http_status = 409


class IllegalTransition(Conflict):
    code = "illegal_transition"


class IntegrityFailure(MlcpError):
    """Stored bytes or a signature do not match what was recorded."""

    code = "integrity_failure"
    http_status = 409


class PayloadTooLarge(MlcpError):
    code = "payload_too_large"
    http_status = 413


class StorageFull(MlcpError):
    code = "storage_full"
    http_status = 507


class UpstreamUnavailable(MlcpError):
    """A system mlcp depends on (Prometheus, the Kubernetes API) did not answer."""

    code = "upstream_unavailable"
    http_status = 503


class BadRequest(MlcpError):
    """A request Django refused before any endpoint saw it (a bad Host header, too many fields)."""

    code = "bad_request"
    http_status = 400


class Forbidden(MlcpError):
    code = "permission_denied"
    http_status = 403


class InternalError(MlcpError):
    """Something failed that the client cannot fix; the details are in the server's log only."""

    code = "internal_error"
    http_status = 500


def first_line(exc: BaseException, limit: int = 500) -> str:
    """The first line of an exception's message (libraries raise pages of text), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
