"""Start-up of `mlcp serve`: verify, load, bind, serve until SIGTERM or SIGINT.

Every step that can refuse (artifact, model, port) raises `StartupRefused`
with an exit status before the server answers anything.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from serving.artifact import ArtifactRejected, load_verified_artifact
from serving.faults import FaultSettings, FaultSwitch
from serving.http import (
    DEFAULT_MAX_BODY_BYTES,
    ModelHTTPServer,
    ServerState,
)
from serving.metrics import ServingMetrics

EXIT_UNVERIFIED, EXIT_BAD_MODEL, EXIT_CANNOT_LISTEN = 3, 4, 5


class StartupRefused(Exception):
    """The server will not start; ``exit_status`` says why (3 artifact, 4 model, 5 port)."""

    def __init__(self, exit_status: int, message: str):
        super().__init__(message)
        self.exit_status = exit_status


@dataclass(frozen=True)
class ServeConfig:
    """Everything `mlcp serve` is started with."""

    model_file: Path
    bundle: Path
    public_keys: Sequence[Path]
    model: str
    version: str
    track: str
    port: int
    host: str = "127.0.0.1"
    expected_digest: str | None = None
    fault: FaultSettings = field(default_factory=FaultSettings)
    fault_seed: int | None = None
    intra_op_threads: int = 1
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def build_server(config: ServeConfig) -> ModelHTTPServer:
    """Verify the artifact, load exactly the verified bytes, bind the port."""
    from serving.model import OnnxModel

    try:
        artifact = load_verified_artifact(config.model_file, config.bundle, config.public_keys,
                                          config.expected_digest)
    except ArtifactRejected as exc:
        raise StartupRefused(EXIT_UNVERIFIED, f"refusing to serve: {exc}") from None
    try:
        model = OnnxModel(artifact.data, intra_op_threads=config.intra_op_threads)
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        raise StartupRefused(EXIT_BAD_MODEL, f"the verified artifact is not a servable model: {exc}") from None
    identity = {"model": config.model, "version": str(config.version), "track": config.track,
                "digest": f"sha256:{artifact.sha256}", "verified_with": str(artifact.public_key)}
    state = ServerState(
        model=model,
        metrics=ServingMetrics(config.model, str(config.version), config.track, artifact.sha256,
                               n_classes=model.n_classes),
        faults=FaultSwitch(config.fault, seed=config.fault_seed),
        identity=identity,
        max_body_bytes=config.max_body_bytes,
    )
    try:
        return ModelHTTPServer((config.host, config.port), state)
    except OSError as exc:
        raise StartupRefused(EXIT_CANNOT_LISTEN, f"cannot listen on {config.host}:{config.port}: {exc}") from None


def serve_until_stopped(server: ModelHTTPServer) -> None:
    """Serve until SIGTERM/SIGINT; /readyz turns 503 first so load balancers drain."""
    def stop(signum, frame):
        server.state.draining.set()
        # shutdown() waits for serve_forever() to return, which runs on this
        # very thread: ask from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    identity = server.state.identity
    print(f"mlcp serve: {identity['model']}:{identity['version']} ({identity['track']}) {identity['digest']} "
          f"verified with {identity['verified_with']}, listening on http://{host}:{port}",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
