"""Request bodies straight into blob staging, hashed as they arrive: a raw stream, or multipart file parts.

The streamed upload (`PUT models/{name}/versions/stream`, what the CLI uses)
is the artifact itself as `application/octet-stream`, its metadata in
headers; `stage_streamed_body` reads it in large blocks into a StagedBlob,
no parser in between. Browsers send multipart: Django hands each chunk of a
file part to `BlobUploadHandler`, which writes it to a StagedBlob (one chunk
in memory). Whatever the view does not commit is discarded when the request ends.
"""

import base64
import binascii
import io
import json
import time
from dataclasses import dataclass
from urllib.parse import unquote

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from controlplane import untrusted_json
from controlplane.errors import InvalidInput, PayloadTooLarge
from registry.storage import StagedBlob, default_store

STREAM_CONTENT_TYPE = "application/octet-stream"
# The headers of a streamed upload. Metadata is a JSON object of the multipart upload's fields
# (format, sha256, git_commit, ci_run_url, training_data_digest, tags, parent, declared_signature).
METADATA_HEADER = "X-Mlcp-Metadata"
FILENAME_HEADER = "X-Mlcp-Filename"  # percent-encoded UTF-8, as the CLI sends it
BUNDLE_HEADER = "X-Mlcp-Bundle"  # a client-made model-signing bundle, base64 of its JSON


class LengthRequired(InvalidInput):
    """A streamed upload without Content-Length: its size must be known, and capped, before a byte is read."""

    code = "length_required"
    http_status = 411


class UnsupportedContentType(InvalidInput):
    code = "unsupported_media_type"  # DRF's code for the same refusal elsewhere in the API
    http_status = 415


@dataclass(frozen=True)
class StreamedUploadHeaders:
    """What a streamed upload says about itself, checked before its body is read."""

    length: int
    fields: dict
    filename: str | None
    bundle_json: str | None


def read_stream_headers(meta: dict, content_type: str) -> StreamedUploadHeaders:
    """Check a streamed upload's Content-Type, Content-Length and mlcp headers; raises before any byte is staged.

    `meta` is the WSGI environ (request.META). Only the form of the metadata is
    checked here; its fields are the multipart upload's, validated by the same serializer.
    """
    if content_type.split(";")[0].strip().lower() != STREAM_CONTENT_TYPE:
        raise UnsupportedContentType(f"a streamed upload is the artifact's bytes as {STREAM_CONTENT_TYPE}, not "
                                     f"{content_type or 'no Content-Type'}; browsers upload multipart to "
                                     "POST models/{name}/versions/")
    limit = settings.MLCP_MAX_UPLOAD_BYTES
    raw_length = meta.get("CONTENT_LENGTH") or ""
    if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower() or not raw_length.strip():
        raise LengthRequired("a streamed upload needs a Content-Length (chunked bodies are not accepted)",
                             limit=limit)
    if not (raw_length.isascii() and raw_length.isdigit()):
        raise InvalidInput(f"Content-Length {raw_length[:40]!r} is not a number of bytes", code="invalid_length")
    # Compared as digits first: int() refuses a string of over 4300 digits (ValueError), and no cap has 20.
    significant = raw_length.lstrip("0") or "0"
    length = int(significant) if len(significant) <= 20 else limit + 1
    if length > limit:
        raise PayloadTooLarge(f"the upload is {length} bytes; uploads are limited to {limit} bytes", limit=limit)
    return StreamedUploadHeaders(length=length, fields=_metadata(meta.get(_environ_key(METADATA_HEADER))),
                                 filename=_filename(meta.get(_environ_key(FILENAME_HEADER))),
                                 bundle_json=_bundle(meta.get(_environ_key(BUNDLE_HEADER))))


def stage_streamed_body(request, length: int) -> StagedBlob:
    """The request's body, all `length` bytes of it, hashed and staged (finished, not committed).

    A body that ends early, or a client that goes away, raises `upload_interrupted` and leaves nothing staged.
    """
    body = _GunicornSocketBody.of(request.META, length, settings.MLCP_UPLOAD_STALL_S)
    staged = default_store().stage(max_bytes=settings.MLCP_MAX_UPLOAD_BYTES)
    staged.receive(body.read if body is not None else request.read, length)
    return staged


class _GunicornSocketBody:
    """A gunicorn request body of known length, read from its socket straight into each block.

    gunicorn's `wsgi.input` moves every received piece through two BytesIO
    buffers and slices (four copies of each byte, holding the GIL); bench/ingest_throughput.py
    measured it at a third of the socket's speed. This reads what gunicorn already
    holds first, then the rest with `recv_into`, and keeps gunicorn's count of
    what is left of the body (`LengthReader.length`) true at every step, so its
    own handling after the response (draining, keep-alive) is unchanged. Used
    only when the body is exactly the shape it expects (a fresh `Body` over a
    `LengthReader` of this length on a `SocketUnreader`); anything else, another
    server or a later gunicorn, goes through `wsgi.input`.
    """

    def __init__(self, sock, body, stall_s: float):
        self._sock, self._body, self._reader, self._stall_s = sock, body, body.reader, stall_s

    @classmethod
    def of(cls, environ: dict, length: int, stall_s: float) -> "_GunicornSocketBody | None":
        try:
            from gunicorn.http.body import Body, LengthReader
            from gunicorn.http.unreader import SocketUnreader
        except ImportError:
            return None
        body, sock = environ.get("wsgi.input"), environ.get("gunicorn.socket")
        reader = getattr(body, "reader", None)
        buffered = getattr(body, "buf", None)
        if (sock is None or type(body) is not Body or type(reader) is not LengthReader
                or type(getattr(reader, "unreader", None)) is not SocketUnreader
                or getattr(reader, "length", None) != length or buffered is None or buffered.tell() != 0):
            return None
        return cls(sock, body, stall_s)

    def read(self, size: int) -> bytes:
        size = min(size, self._reader.length)
        if size <= 0:
            return b""
        held = self._take_held(size)
        if held:
            return held
        block = bytearray(size)
        view, got = memoryview(block), 0
        # Each block must arrive within stall_s: gunicorn's sockets block without a timeout, so a client that
        # stops sending (or sends a byte a second) would hold this worker until gunicorn kills it (sync worker),
        # or for ever (gthread, whose heartbeat runs on another thread).
        deadline = time.monotonic() + self._stall_s
        prior_timeout = self._sock.gettimeout()
        try:
            while got < size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise InvalidInput(f"the upload stalled: less than {size} bytes in {self._stall_s:g} s; "
                                       "nothing was stored", code="upload_interrupted")
                self._sock.settimeout(left)
                try:
                    received = self._sock.recv_into(view[got:], size - got)
                except TimeoutError:
                    continue  # the deadline passed: said above
                if not received:
                    break
                got += received
        except BaseException:
            # Where the next request starts on this connection is now unknown: gunicorn must close it, not
            # drain the rest of the body (slowly) or parse it as a request.
            self._body.failed = True
            raise
        finally:
            self._sock.settimeout(prior_timeout)
            self._reader.length -= got
        return block if got == size else bytes(view[:got])

    def _take_held(self, size: int) -> bytes:
        # Bytes gunicorn read past the request head: the body's start (and, pipelined, what follows it).
        unreader = self._reader.unreader
        held = unreader.buf.getvalue()
        if not held:
            return b""
        taken, rest = held[:size], held[size:]
        unreader.buf = io.BytesIO()
        unreader.buf.write(rest)
        self._reader.length -= len(taken)
        return taken


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _metadata(raw: str | None) -> dict:
    if not raw:
        return {}
    try:
        value = untrusted_json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"{METADATA_HEADER} is not valid JSON: {exc}", code="invalid_metadata") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{METADATA_HEADER} must be a JSON object of upload fields", code="invalid_metadata")
    return value


def _filename(raw: str | None) -> str | None:
    if not raw:
        return None
    # WSGI hands header bytes over as latin-1; the CLI percent-encodes UTF-8 names.
    return unquote(raw.encode("latin-1", "replace").decode("utf-8", "replace"), errors="replace")


def _bundle(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        bundle_json = base64.b64decode(raw, validate=True).decode("utf-8")
        # Parsed here, before the body is read: a bundle that is no JSON object is refused without reading
        # gigabytes first, and JSON nested thousands deep (RecursionError) is a 400, not the verifier's 500.
        is_object = isinstance(json.loads(bundle_json), dict)
    except (binascii.Error, ValueError, RecursionError):
        is_object = False
    if not is_object:
        raise InvalidInput(f"{BUNDLE_HEADER} must be the bundle's JSON object in base64", code="invalid_bundle")
    return bundle_json


class StagedUpload(UploadedFile):
    """An uploaded file part that lives in blob staging until the view commits it."""

    def __init__(self, staged: StagedBlob, name: str, content_type: str):
        super().__init__(file=None, name=name, content_type=content_type, size=staged.size)
        self.staged = staged

    def read_small(self, limit: int) -> bytes:
        """The whole part, for small parts such as a signature bundle."""
        if self.staged.size > limit:
            raise PayloadTooLarge(f"'{self.field_name}' is larger than {limit} bytes")
        with self.staged.open() as fh:
            return fh.read()

    def close(self):
        pass


class BlobUploadHandler(FileUploadHandler):
    # Django's default is 64 KiB; bigger chunks mean fewer Python-level loops per GiB, same bounded memory.
    chunk_size = 1024 * 1024

    def __init__(self, request=None):
        super().__init__(request)
        self.staged: StagedBlob | None = None
        self.all_staged: list[StagedBlob] = []
        if request is not None:
            request.mlcp_staged_blobs = self.all_staged

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        limit = settings.MLCP_MAX_UPLOAD_BYTES
        if content_length and content_length > limit + 1024 * 1024:
            raise PayloadTooLarge(
                f"the request is {content_length} bytes; uploads are limited to {limit} bytes",
                limit=limit,
            )
        return None

    def new_file(self, field_name, file_name, *args, **kwargs):
        super().new_file(field_name, file_name, *args, **kwargs)
        self.staged = default_store().stage(max_bytes=settings.MLCP_MAX_UPLOAD_BYTES)
        self.all_staged.append(self.staged)

    def receive_data_chunk(self, raw_data, start):
        self.staged.write(raw_data)
        return None

    def file_complete(self, file_size):
        self.staged.finish()
        upload = StagedUpload(self.staged, self.file_name, self.content_type)
        upload.field_name = self.field_name
        return upload

    def upload_interrupted(self):
        discard_all(self.all_staged)


def discard_all(staged_blobs) -> None:
    for staged in staged_blobs:
        staged.discard()
