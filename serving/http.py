"""The HTTP side of `mlcp serve`: predictions, health, metrics and the fault
switch, on the standard library's threading server (one thread per connection,
HTTP/1.1 keep-alive).

    POST /v1/predict   {"inputs": [...]} -> {"logits", "classes"}; 400 on bad input
    GET  /healthz      the process is up
    GET  /readyz       the verified model is loaded and the server is not draining
    GET  /metrics      Prometheus text format
    POST /admin/fault  {"error_rate", "latency_ms", "never_class"}; loopback clients only (demos, tests)
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving.faults import FaultSettings, FaultSwitch
from serving.metrics import ServingMetrics
from serving.model import BadInput, OnnxModel

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass
class ServerState:
    """What every request handler shares."""

    model: OnnxModel
    metrics: ServingMetrics
    faults: FaultSwitch
    identity: dict
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    draining: threading.Event = field(default_factory=threading.Event)


class _Reply(Exception):
    """Answer now with this status and JSON body (how handlers bail out early)."""

    def __init__(self, status: int, body: dict, close: bool = False):
        super().__init__(body.get("detail", ""))
        self.status, self.body, self.close = status, body, close


def _error(status: int, code: str, detail: str, close: bool = False) -> _Reply:
    return _Reply(status, {"code": code, "detail": detail}, close)


class ModelRequestHandler(BaseHTTPRequestHandler):
    """Routes one request; ``server.state`` is the shared `ServerState`."""

    protocol_version = "HTTP/1.1"
    server_version = "mlcp-serve"

    @property
    def state(self) -> ServerState:
        return self.server.state

    def do_GET(self):
        if self.path == "/healthz":
            self._send_json(200, {"status": "ok"})
        elif self.path == "/readyz":
            ready = not self.state.draining.is_set()
            self._send_json(200 if ready else 503, {"ready": ready, **self.state.identity})
        elif self.path == "/metrics":
            self._send(200, self.state.metrics.render(), self.state.metrics.content_type)
        else:
            self._send_json(404, {"code": "not_found", "detail": f"no route GET {self.path}"})

    def do_POST(self):
        if self.path == "/v1/predict":
            self._predict()
        elif self.path == "/admin/fault":
            self._admin_fault()
        else:
            self._discard_body()
            self._send_json(404, {"code": "not_found", "detail": f"no route POST {self.path}"})

    def _predict(self) -> None:
        started = time.perf_counter()
        try:
            payload = self._read_json()
            inputs = self.state.model.parse_inputs(payload)
            fail, delay_s = self.state.faults.draw()
            if delay_s:
                time.sleep(delay_s)
            if fail:
                raise _error(500, "injected_fault", "failed on purpose by the fault switch (--fault-error-rate)")
            body = self.state.model.predict(inputs, never_class=self.state.faults.settings.never_class)
            self.state.metrics.observe_predictions(body["classes"])
            status, close = 200, False
        except BadInput as exc:
            status, body, close = 400, {"code": exc.code, "detail": exc.detail}, False
        except _Reply as reply:
            status, body, close = reply.status, reply.body, reply.close
        except Exception as exc:  # the model itself failed: a real 5xx, counted as one
            status, body, close = 500, {"code": "inference_failed", "detail": f"{type(exc).__name__}: {exc}"}, False
        # Counted before answering, so a client that reads /metrics right after
        # its answer always finds its own request there.
        self.state.metrics.observe(status, time.perf_counter() - started)
        self._send_json(status, body, close=close)

    def _admin_fault(self) -> None:
        try:
            if not ipaddress.ip_address(self.client_address[0]).is_loopback:
                self._discard_body()
                raise _error(403, "forbidden", "the fault switch answers loopback clients only")
            payload = self._read_json()
            current = self.state.faults.settings
            try:
                settings = FaultSettings(
                    error_rate=float(payload.get("error_rate", current.error_rate)),
                    latency_ms=float(payload.get("latency_ms", current.latency_ms)),
                    never_class=payload.get("never_class", current.never_class),
                )
            except (AttributeError, TypeError, ValueError) as exc:
                raise _error(400, "invalid_fault", str(exc)) from None
            self.state.faults.set(settings)
            self._send_json(200, {"error_rate": settings.error_rate, "latency_ms": settings.latency_ms,
                                  "never_class": settings.never_class})
        except _Reply as reply:
            self._send_json(reply.status, reply.body, close=reply.close)

    def _read_json(self):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None:
            raise _error(411, "length_required", "send the body with a Content-Length", close=True)
        try:
            length = int(length)
        except ValueError:
            raise _error(400, "bad_content_length", "Content-Length is not a number", close=True) from None
        if length > self.state.max_body_bytes:
            # Not reading a body that large leaves the connection unusable: close it.
            raise _error(413, "body_too_large",
                         f"the body has {length} bytes, the limit is {self.state.max_body_bytes}", close=True)
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _error(400, "malformed_json", f"the body is not JSON: {exc}") from None

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= self.state.max_body_bytes:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _send_json(self, status: int, body: dict, close: bool = False) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", close)

    def _send(self, status: int, data: bytes, content_type: str, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass  # one line per request would drown the logs at benchmark rates; /metrics has the counts


class ModelHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server carrying the shared `ServerState`."""

    daemon_threads = True
    # Many short-lived client connections at once (traffic generators, probes).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: ServerState):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, ModelRequestHandler)
        self.state = state
