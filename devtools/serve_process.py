"""Run `mlcp serve` as a child process and wait until it is ready: for benches,
tests and demos that need a real server (its own process, port and metrics).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from devtools.processes import stop_process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """One `mlcp serve` child on 127.0.0.1; use as a context manager.

    ``extra_args`` go on the command line as given (e.g. ``["--fault-seed", "7"]``);
    ``env``, when given, is the child's whole environment.
    """

    def __init__(self, model_file: Path, bundle: Path, public_keys: Sequence[Path], *, model: str,
                 version: str, track: str, extra_args: Sequence[str] = (), port: int | None = None,
                 env: Mapping[str, str] | None = None):
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "cli.main", "serve", "--model-file", str(model_file),
                     "--bundle", str(bundle), "--model", model, "--version", str(version), "--track", track,
                     "--port", str(self.port), *[a for k in public_keys for a in ("--public-key", str(k))],
                     *extra_args]
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def target(self) -> str:
        """``host:port`` for a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ServeProcess:
        """Start and wait for /readyz; raise with the server's own message if it exits."""
        # A file, not a pipe: nobody reads a pipe while the server runs, and a
        # full one would block the server on its next write to stderr.
        self._log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self._log, text=True,
                                        env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlcp serve exited with {self.process.returncode}: {self.log().strip()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"mlcp serve on {self.url} not ready within {timeout_s}s")

    def set_fault(self, error_rate: float | None = None, latency_ms: float | None = None) -> dict:
        """Change the fault switch live (POST /admin/fault); returns the settings now in force."""
        body = {k: v for k, v in (("error_rate", error_rate), ("latency_ms", latency_ms)) if v is not None}
        request = urllib.request.Request(f"{self.url}/admin/fault", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def metrics_text(self) -> str:
        """The server's /metrics page."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            return response.read().decode()

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        stop_process(self.process, grace_s=10)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
