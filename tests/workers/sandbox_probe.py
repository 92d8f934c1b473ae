"""A probe that runs inside the gate sandbox the way a gate runs a model, and reports what it could reach.

Run by tests/workers/test_sandbox.py through `workers.sandbox.runner.run_job`;
each check records what happened rather than raising, so one report shows all.
"""

import os
import socket
import sys
from pathlib import Path

from workers.sandbox.protocol import serve


def _attempt(action) -> str:
    try:
        result = action()
    except Exception as exc:
        return f"refused: {type(exc).__name__}"
    return f"allowed: {str(result)[:200]}"


def probe(job_dir: Path, params: dict) -> dict:
    def write(path):
        Path(path).write_text("written by a sandboxed model")
        return path

    def connect():
        with socket.create_connection(("127.0.0.1", params["port"]), timeout=5) as conn:
            return conn.recv(64).decode()

    return {
        "read_secret_files": {path: _attempt(lambda p=path: Path(p).read_bytes()[:16]) for path in params["secrets"]},
        "list_data_dir": _attempt(lambda: os.listdir(params["data_dir"])),
        # What the sandbox handed the process, before any import could add to os.environ.
        "environment": sorted(entry.split(b"=", 1)[0].decode()
                              for entry in Path("/proc/self/environ").read_bytes().split(b"\0") if entry),
        "write_outside": {path: _attempt(lambda p=path: write(p)) for path in params["outside"]},
        "write_own_tmp": _attempt(lambda: write(Path(os.environ["TMPDIR"]) / "scratch")),
        "loopback_server": _attempt(connect),
    }


if __name__ == "__main__":
    sys.exit(serve({"probe": probe}))
