"""A partner's webhook receiver on loopback, as the rollout webhook tests need it.

It records every POST, can answer 503 to the first N, can hold each request
until the test lets it go, and keeps what a Standard Webhooks receiver keeps:
the ids it has accepted, so a retry of an accepted message is acknowledged and
not processed again.
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    def __init__(self, *, port: int = 0, fail_first: int = 0):
        self.received: list[tuple[dict, bytes]] = []  # every POST, retries included
        self.accepted: dict[str, bytes] = {}  # webhook-id -> body, each id once
        self.fail_first = fail_first
        self.entered = threading.Event()  # set when a request arrives (and is held, if hold is on)
        self.hold = False
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "WebhookReceiver":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def outcomes(self) -> list[bytes]:
        """What the partner processed: each message once, in arrival order."""
        with self._lock:
            return list(self.accepted.values())

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers)
                receiver.entered.set()
                if receiver.hold:
                    receiver.release.wait()
                with receiver._lock:
                    receiver.received.append((headers, body))
                    down = len(receiver.received) <= receiver.fail_first
                    if not down:
                        receiver.accepted.setdefault(headers["webhook-id"], body)
                self.send_response(503 if down else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        return Handler
