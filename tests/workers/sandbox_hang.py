"""Sandbox jobs that misbehave on purpose: they hang, over-allocate, answer NaN, or leave a deep tree behind."""

import os
import sys
from pathlib import Path
import threading

from workers.sandbox.protocol import serve


def hang(job_dir, params):
    threading.Event().wait()  # never set: only the sandbox's wall-clock limit ends this job


def allocate(job_dir, params):
    return {"length": len(bytearray(params["bytes"]))}


def nan(job_dir, params):
    return {"metric": float("nan")}


def deep(job_dir, params):
    # Deeper than shutil.rmtree can recurse: the worker must still remove it.
    path = job_dir / "tmp"
    for _ in range(params["depth"]):
        path = path / "d"
        path.mkdir()
        os.chdir(path)  # relative steps keep each path short
        path = Path(".")
    return {}


if __name__ == "__main__":
    sys.exit(serve({"hang": hang, "allocate": allocate, "nan": nan, "deep": deep}))
