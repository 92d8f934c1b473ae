"""The child's side of the sandbox: read one request, run one job, write one bounded result.

The job directory holds `request.json` ({"job": name, "params": {...}}), the
input files the worker copied in, and `out/` for what the job produces. The
child writes `out/result.json` and nothing else the worker will read but the
derived artifacts the job names. Run as `python -m workers.sandbox.protocol`
it only says it is ready: that is how the worker probes a sandbox level.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controlplane.errors import first_line

REQUEST = "request.json"
RESULT = "out/result.json"

Job = Callable[[Path, dict], dict]


def serve(jobs: dict[str, Job]) -> int:
    """Run the requested job in the current directory; the exit status says whether it answered."""
    job_dir = Path.cwd()
    request = json.loads((job_dir / REQUEST).read_text())
    job = jobs.get(request.get("job"))
    if job is None:
        return _answer(job_dir, {"ok": False, "code": "unknown_job", "detail": f"no sandbox job {request.get('job')!r}"})
    try:
        result = job(job_dir, request.get("params") or {})
    except Exception as exc:  # the worker turns this into a gate error; the model may be why
        result = {"ok": False, "code": getattr(exc, "code", "sandbox_job_failed"),
                  "detail": f"{type(exc).__name__}: {first_line(exc)}",
                  "traceback": traceback.format_exc(limit=8)[-4000:]}
    else:
        result = {"ok": True, **result}
    return _answer(job_dir, result)


def _answer(job_dir: Path, result: dict[str, Any]) -> int:
    (job_dir / RESULT).write_text(json.dumps(result, default=_jsonable))
    return 0


def _jsonable(value: Any) -> Any:
    # numpy scalars and arrays in evidence: plain numbers and lists.
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


if __name__ == "__main__":
    print("sandbox-ready")
    sys.exit(0)
