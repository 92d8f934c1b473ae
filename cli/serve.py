"""`mlcp serve`: run the reference model server on a verified artifact.

Registered into the `mlcp` parser by `add_serve_parser`; the server itself
lives in `serving` and is imported only when this command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def add_serve_parser(sub) -> None:
    """Add the `serve` subcommand to the `mlcp` subparsers."""
    serve = sub.add_parser(
        "serve", help="serve a verified model over HTTP with Prometheus metrics",
        description="Verify MODEL_FILE against BUNDLE with any PUBLIC_KEY, refuse to start if it does not "
                    "verify, then serve predictions from exactly the verified bytes. The fault switch "
                    "(--fault-*, POST /admin/fault from loopback) is for demos and tests.")
    serve.add_argument("--model-file", default=os.environ.get("MLCP_MODEL_PATH"),
                       required="MLCP_MODEL_PATH" not in os.environ, help="ONNX artifact (env MLCP_MODEL_PATH)")
    serve.add_argument("--bundle", required=True, help="model-signing bundle of the artifact")
    serve.add_argument("--public-key", action="append", required=True, dest="public_keys",
                       help="trusted public key (PEM); repeat for key rotation")
    serve.add_argument("--digest", default=os.environ.get("MLCP_MODEL_DIGEST"),
                       help="also require this sha256 (env MLCP_MODEL_DIGEST, set by the rollout controller)")
    serve.add_argument("--model", required=True, help="model name (metrics label)")
    serve.add_argument("--version", required=True, help="model version (metrics label)")
    serve.add_argument("--track", required=True, choices=["stable", "canary"])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--fault-error-rate", type=float, default=_env_float("MLCP_FAULT_ERROR_RATE", 0.0),
                       help="share of predictions answered 500 on purpose (demos; env MLCP_FAULT_ERROR_RATE)")
    serve.add_argument("--fault-latency-ms", type=float, default=_env_float("MLCP_FAULT_LATENCY_MS", 0.0),
                       help="delay added to every prediction (demos; env MLCP_FAULT_LATENCY_MS)")
    serve.add_argument("--fault-seed", type=int, help="seed of the fault draws, for reproducible tests")
    serve.add_argument("--intra-op-threads", type=int, default=1,
                       help="onnxruntime threads per request (requests already run in parallel)")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace, client=None) -> int:
    """Build the server (or explain why not, with exit status 3, 4 or 5) and serve."""
    from serving.faults import FaultSettings
    from serving.server import (
        ServeConfig,
        StartupRefused,
        build_server,
        serve_until_stopped,
    )

    try:
        fault = FaultSettings(error_rate=args.fault_error_rate, latency_ms=args.fault_latency_ms)
    except ValueError as exc:
        print(f"mlcp serve: {exc}", file=sys.stderr)
        return 2
    config = ServeConfig(
        model_file=Path(args.model_file), bundle=Path(args.bundle), public_keys=[Path(k) for k in args.public_keys],
        model=args.model, version=args.version, track=args.track, host=args.host, port=args.port,
        expected_digest=args.digest, fault=fault, fault_seed=args.fault_seed,
        intra_op_threads=args.intra_op_threads,
    )
    try:
        server = build_server(config)
    except StartupRefused as exc:
        print(f"mlcp serve: {exc}", file=sys.stderr)
        return exc.exit_status
    serve_until_stopped(server)
    return 0
