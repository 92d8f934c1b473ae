"""Run the mlcp web app in a real gunicorn process against the test database."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.support.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def server_env(**extra) -> dict:
    return dict(os.environ, DATABASE_URL=test_database_url(), MLCP_DATA_DIR=str(settings.DATA_DIR),
                MLCP_ARTIFACT_DIR=str(settings.MLCP_ARTIFACT_DIR),
                MLCP_ARTIFACT_STORE=settings.MLCP_ARTIFACT_STORE, PYTHONPATH=str(ROOT),
                MLCP_TRUSTED_KEY_FILES=",".join(settings.MLCP_TRUSTED_KEY_FILES), **extra)


@contextmanager
def gunicorn_server(*, file_size_limit: int | None = None, **env):
    """Yields (base URL, master Popen). `file_size_limit` caps every file the server writes (RLIMIT_FSIZE)."""
    port = free_port()

    def _limit_file_size():
        if file_size_limit is not None:
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of dying
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "controlplane.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--timeout", "600", "--log-level", "warning"],
        cwd=ROOT, env=server_env(**env), preexec_fn=_limit_file_size,
    )
    try:
        wait_for_port(port, timeout=60, process=process)
        base_url = f"http://127.0.0.1:{port}"
        # The master listens before it forks its worker: wait for an answer, so a worker exists (worker_pids).
        _wait_for_an_answer(f"{base_url}/healthz", process)
        yield base_url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_an_answer(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until `url` answers 200; the bound is for a server that never starts, not a speed requirement."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout}s")
        time.sleep(0.05)


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]
