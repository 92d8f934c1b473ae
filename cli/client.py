"""A small HTTP client for the mlcp API, used by the `mlcp` CLI."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import requests
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor


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
