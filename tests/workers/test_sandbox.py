"""The gate sandbox: a job run the way a gate runs a model reaches no secret, file, or network of the worker."""

import os
import socket
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from registry import signing
from workers.sandbox.isolation import Limits, isolation_in_force, require_isolation
from workers.sandbox.runner import SandboxFailure, run_job

SECRETS = {"SECRET_KEY": "s3cret-django-key", "DATABASE_URL": "postgres://mlcp:pw@db/mlcp",
           "CELERY_BROKER_URL": "redis://:pw@broker:6379/0", "MLCP_SIGNING_KEY": "-----BEGIN EC PRIVATE KEY-----"}


@pytest.fixture
def loopback_server():
    """A TCP server on the worker's loopback that answers 'hello' to anyone who connects."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(30)

    def serve():
        try:
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.sendall(b"hello")
        except OSError:
            return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()


def _probe(tmp_path, port, monkeypatch):
    # Checked first: on a weak level the probe's writes would succeed and litter the checkout.
    assert isolation_in_force().strong, f"this host should offer a strong sandbox, got {isolation_in_force()}"
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    signing.active_public_key()  # makes sure the development key exists on disk to be stolen
    secrets = [str(p) for p in Path(settings.DATA_DIR).rglob("*") if p.is_file()][:20]
    assert any("signing" in p for p in secrets), "the data directory should hold the signing key for this test"
    outside = [str(tmp_path / "planted"), str(Path(settings.BASE_DIR) / "workers" / "planted"),
               str(Path(settings.DATA_DIR) / "planted")]
    answer = run_job("probe", inputs={}, params={"secrets": secrets, "data_dir": str(settings.DATA_DIR),
                                                 "outside": outside, "port": port},
                     entry_module="tests.workers.sandbox_probe", extra_packages=("tests",))
    assert answer.result["ok"], answer.result
    return answer, secrets, outside


def test_a_sandboxed_job_reads_no_secret_writes_nothing_outside_and_reaches_no_loopback_server(
        tmp_path, loopback_server, monkeypatch):
    answer, secrets, outside = _probe(tmp_path, loopback_server, monkeypatch)
    report, isolation = answer.result, answer.isolation
    assert all(v.startswith("refused") for v in report["read_secret_files"].values()), report["read_secret_files"]
    assert report["list_data_dir"].startswith("refused")
    assert not set(SECRETS) & set(report["environment"])
    assert set(report["environment"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE",
                                          "PYTHONUNBUFFERED", "PWD", "LC_CTYPE"}
    assert all(v.startswith("refused") for v in report["write_outside"].values()), report["write_outside"]
    assert not any(Path(p).exists() for p in outside)
    assert report["write_own_tmp"].startswith("allowed")
    if isolation.network:
        assert report["loopback_server"].startswith("refused"), report["loopback_server"]
    else:
        assert report["loopback_server"] == "allowed: hello"  # the level says so; nothing is claimed


def test_the_host_gives_gates_bubblewrap(monkeypatch):
    # make test installs bubblewrap, and root can use it: anything weaker here is a regression.
    assert isolation_in_force().name == "bubblewrap"


def test_a_worker_with_only_a_scrubbed_subprocess_refuses_to_gate(settings, monkeypatch):
    settings.MLCP_GATE_SANDBOX = "scrubbed"
    settings.MLCP_GATE_SANDBOX_ALLOW_WEAK = False
    isolation_in_force.cache_clear()
    try:
        with pytest.raises(ImproperlyConfigured, match="MLCP_GATE_SANDBOX_ALLOW_WEAK"):
            require_isolation()
        settings.MLCP_GATE_SANDBOX_ALLOW_WEAK = True
        assert require_isolation().name == "scrubbed"
    finally:
        isolation_in_force.cache_clear()


def test_a_job_past_its_wall_clock_limit_is_killed(settings):
    limits = Limits(address_space_bytes=4 * 1024**3, cpu_seconds=60, file_size_bytes=1024**2, processes=4096,
                    wall_seconds=0.5)
    with pytest.raises(SandboxFailure) as raised:
        # The probe's connect waits on a server that never answers: it outlives any half-second limit.
        run_job("hang", inputs={}, params={}, entry_module="tests.workers.sandbox_hang", extra_packages=("tests",),
                limits=limits)
    assert raised.value.code == "sandbox_timeout"


def test_a_job_over_its_memory_limit_fails_without_harming_the_worker(settings):
    limits = Limits(address_space_bytes=3 * 1024**3, cpu_seconds=60, file_size_bytes=1024**2, processes=4096,
                    wall_seconds=120)
    answer = run_job("allocate", inputs={}, params={"bytes": 8 * 1024**3}, entry_module="tests.workers.sandbox_hang",
                     extra_packages=("tests",), limits=limits)
    assert answer.result["ok"] is False and "MemoryError" in answer.result["detail"]
    assert os.getpid() > 0  # still here


def test_input_names_cannot_escape_the_job_directory():
    with pytest.raises(ValueError):
        run_job("probe", inputs={"../escape": b"x"}, params={})


def test_a_job_answering_nan_is_refused(tmp_path):
    with pytest.raises(SandboxFailure) as raised:
        run_job("nan", inputs={}, params={}, entry_module="tests.workers.sandbox_hang", extra_packages=("tests",))
    assert raised.value.code == "sandbox_bad_result"


def test_job_directories_live_in_a_private_folder_and_are_removed_however_deep(tmp_path):
    from workers.sandbox.runner import jobs_root

    run_job("deep", inputs={}, params={"depth": 3000}, entry_module="tests.workers.sandbox_hang",
            extra_packages=("tests",))
    root = jobs_root()
    assert root.stat().st_mode & 0o777 == 0o700
    assert list(root.glob("job-*")) == []


def test_a_starting_worker_sweeps_only_the_job_directories_of_dead_workers():
    import subprocess
    import sys

    from workers.sandbox.runner import jobs_root, sweep_stale_jobs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = jobs_root() / f"job-{dead.stdout.strip()}-orphan"
    running = jobs_root() / f"job-{os.getpid()}-running"
    for job_dir in (orphan, running):
        (job_dir / "tmp").mkdir(parents=True)
    try:
        sweep_stale_jobs()
        assert not orphan.exists() and running.exists()
    finally:
        import shutil

        shutil.rmtree(running, ignore_errors=True)
