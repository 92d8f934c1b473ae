"""A small HTTP client for the mlcp API, used by the `mlcp` CLI."""

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor


# Blocks a streamed upload reads from the file and hands to the socket: few Python-level turns per GiB.
STREAM_BLOCK = 4 * 1024 * 1024
# A client bundle travels in a header; servers cap a header line (gunicorn: 8190 bytes), so a larger one is
# sent as a multipart part instead.
MAX_BUNDLE_HEADER = 6 * 1024


class ApiError(Exception):
    """The server answered with an error: its JSON `{code, detail}` and the HTTP status."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"{detail} ({code})")
        self.status, self.code, self.detail = status, code, detail


class ServerUnreachable(Exception):
    """No answer from the server at all (refused, unknown host, TLS, timeout): not an error it chose."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot reach mlcp at {url}: {reason}")
        self.url, self.reason = url, reason


@dataclass
class MlcpClient:
    url: str
    token: str | None
    timeout: float = 60.0

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None) -> "MlcpClient":
        return cls((url or os.environ.get("MLCP_URL") or "http://127.0.0.1:8000").rstrip("/"),
                   token or os.environ.get("MLCP_TOKEN"))

    def _headers(self) -> dict:
        return {"Authorization": f"Token {self.token}"} if self.token else {}

    def request(self, method: str, path: str, **kwargs):
        try:
            response = requests.request(method, f"{self.url}{path}", headers={**self._headers(),
                                        **kwargs.pop("headers", {})}, timeout=kwargs.pop("timeout", self.timeout),
                                        **kwargs)
        except requests.Timeout as exc:
            raise ServerUnreachable(self.url, f"no answer within {self.timeout:.0f} s ({_root_cause(exc)})") from None
        except requests.ConnectionError as exc:
            raise ServerUnreachable(self.url, _root_cause(exc)) from None
        if response.status_code >= 400:
            try:
                body = response.json()
                raise ApiError(response.status_code, body.get("code", "error"), body.get("detail", response.text))
            except ValueError:
                raise ApiError(response.status_code, "error", response.text[:500]) from None
        return response

    def get_json(self, path: str, **params):
        return self.request("GET", path, params=params).json()

    def get_all(self, path: str, limit: int | None = None, **params) -> list:
        """The items of a paginated listing, page after page, or its first `limit` items."""
        items, page = [], 1
        while True:
            body = self.get_json(path, page=page, **params)
            items.extend(body["results"])
            if not body.get("next") or (limit is not None and len(items) >= limit):
                return items[:limit] if limit is not None else items
            page += 1

    def post_json(self, path: str, body: dict):
        return self.request("POST", path, json=body).json()

    def ensure_model(self, name: str) -> dict:
        try:
            return self.get_json(f"/api/v1/models/{name}/")
        except ApiError as exc:
            if exc.status != 404:
                raise
        return self.post_json("/api/v1/models/", {"name": name})

    def upload(self, path: str, file_path: Path, file_field: str, fields: dict, on_progress=None,
               extra_files: dict | None = None):
        """A streamed multipart upload; `on_progress(bytes_sent, total)` is called as it goes."""
        with open(file_path, "rb") as fh:
            parts = {k: str(v) for k, v in fields.items() if v not in (None, "")}
            parts[file_field] = (file_path.name, fh, "application/octet-stream")
            for name, extra in (extra_files or {}).items():
                parts[name] = (Path(extra).name, open(extra, "rb"), "application/json")
            encoder = MultipartEncoder(fields=parts)
            monitor = MultipartEncoderMonitor(
                encoder, (lambda m: on_progress(m.bytes_read, m.len)) if on_progress else None)
            return self.request("POST", path, data=monitor, headers={"Content-Type": monitor.content_type},
                                timeout=None).json()

    def upload_version(self, model: str, file_path: Path, fields: dict, bundle: Path | None = None,
                       on_progress=None) -> dict:
        """Register a version by streaming the file as the request body (`PUT .../versions/stream`).

        The server hashes and stores the bytes as they arrive, with no multipart
        parsing; the metadata travels in headers. A bundle too large for a
        header goes the multipart way instead.
        """
        bundle_b64 = base64.b64encode(Path(bundle).read_bytes()).decode() if bundle else None
        if bundle_b64 is not None and len(bundle_b64) > MAX_BUNDLE_HEADER:
            return self.upload(f"/api/v1/models/{model}/versions/", file_path, "artifact", fields,
                               on_progress=on_progress, extra_files={"bundle": bundle})
        metadata = {k: v for k, v in fields.items() if v not in (None, "")}
        headers = {"Content-Type": "application/octet-stream", "X-Mlcp-Metadata": json.dumps(metadata),
                   "X-Mlcp-Filename": quote(file_path.name, safe="")}
        if bundle_b64 is not None:
            headers["X-Mlcp-Bundle"] = bundle_b64
        with open(file_path, "rb") as fh:
            body = _FileBody(fh, os.fstat(fh.fileno()).st_size, on_progress)
            return self.request("PUT", f"/api/v1/models/{model}/versions/stream", data=body, headers=headers,
                                timeout=None).json()

    def download(self, path: str, out: Path, on_progress=None) -> str:
        response = self.request("GET", path, stream=True, timeout=None)
        total = int(response.headers.get("Content-Length") or 0)
        hasher, done = hashlib.sha256(), 0
        with open(out, "wb") as fh:
            for chunk in response.iter_content(1024 * 1024):
                fh.write(chunk)
                hasher.update(chunk)
                done += len(chunk)
                if on_progress:
                    on_progress(done, total)
        return hasher.hexdigest()


class _FileBody:
    """A file as a request body of known length, in large blocks.

    Its length makes requests send a Content-Length (not chunked), and
    iterating it hands urllib3 STREAM_BLOCK bytes per send instead of the 16 KiB
    it reads from a file object itself.
    """

    def __init__(self, fh, size: int, on_progress=None):
        self._fh, self._size, self._on_progress = fh, size, on_progress

    def __len__(self) -> int:
        return self._size

    def __iter__(self):
        sent = 0
        while sent < self._size:
            block = self._fh.read(min(STREAM_BLOCK, self._size - sent))
            if not block:
                # Sending fewer bytes than announced would leave the server waiting for the rest.
                raise OSError(f"the file shrank to {sent} bytes while it was being sent; nothing was stored")
            sent += len(block)
            yield block
            if self._on_progress:
                self._on_progress(sent, self._size)


def _root_cause(exc: BaseException) -> str:
    """What went wrong underneath requests' and urllib3's wrappers: "Connection refused", not a repr."""
    deepest = exc
    while deepest.__context__ is not None or deepest.__cause__ is not None:
        deepest = deepest.__cause__ or deepest.__context__
    return getattr(deepest, "strerror", None) or str(deepest) or deepest.__class__.__name__


def sha256_file(path: Path, on_progress=None) -> str:
    hasher, done = hashlib.sha256(), 0
    total = path.stat().st_size
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            hasher.update(chunk)
            done += len(chunk)
            if on_progress:
                on_progress(done, total)
    return hasher.hexdigest()
