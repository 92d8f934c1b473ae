"""Helpers to start real servers on loopback for tests: ports, readiness, Redis."""

import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from devtools.embedded.ports import free_port, wait_for_port  # noqa: F401  (re-exported for tests)


@contextmanager
def redis_server():
    """A throwaway redis-server on loopback with no persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install the 'redis-server' package (make test does)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mlcp-redis-") as data_dir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", data_dir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, process=process)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def rss_high_water_kb(pid: int) -> int:
    return _status_kb(pid, "VmHWM:")


def rss_kb(pid: int) -> int:
    return _status_kb(pid, "VmRSS:")


def reset_rss_high_water(pid: int) -> None:
    """Start `pid`'s peak-RSS count again from what it holds now (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found")
