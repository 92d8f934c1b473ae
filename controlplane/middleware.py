"""Bounds on what one request may leave behind in memory or on disk.

Django's DATA_UPLOAD_MAX_MEMORY_SIZE guards `request.body` and form fields,
but DRF's JSON and form parsers read the request stream directly, so a JSON
body of any size would be read into memory and parsed. An API body declared
larger than that limit is refused before anything reads it, with the API's
413 `payload_too_large`. Multipart bodies are left to
registry.upload.BlobUploadHandler, which streams file parts to disk under
MLCP_MAX_UPLOAD_BYTES (Django still bounds their non-file fields).

Those staged file parts are discarded when the response is ready, whatever
the endpoint: one that takes no files (or fails before its own cleanup) must
not leave gigabytes in staging. Committed blobs are not touched.
"""

from django.conf import settings

from controlplane.api import error_response, is_api_request
from controlplane.errors import PayloadTooLarge
from registry.upload import STREAM_CONTENT_TYPE, discard_all


class RequestLimitsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api_request(request):
            refused = _oversized_body(request)
            if refused is not None:
                return error_response(refused)
        try:
            return self.get_response(request)
        finally:
            discard_all(getattr(request, "mlcp_staged_blobs", ()))


def _oversized_body(request) -> PayloadTooLarge | None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    content_type = request.META.get("CONTENT_TYPE", "")
    if limit is None or content_type.startswith("multipart/"):
        return None
    if content_type.split(";")[0].strip().lower() == STREAM_CONTENT_TYPE:
        # A streamed upload: its endpoint stages the body under MLCP_MAX_UPLOAD_BYTES, and no API parser
        # reads application/octet-stream (anywhere else DRF refuses it unread, 415).
        return None
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None  # DRF reads such a body as empty
    if length <= limit:
        return None
    return PayloadTooLarge(f"the request body is {length} bytes; API bodies are limited to {limit} bytes "
                           "(artifacts and golden sets go up as multipart file parts)", limit=limit)
