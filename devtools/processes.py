"""Stopping the child processes the development tools start (Prometheus, Alertmanager, model servers)."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen | None, *, grace_s: float = 15) -> None:
    """SIGTERM, and SIGKILL if it lingers past `grace_s`: a hung child must never hang the tests or the demo."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
