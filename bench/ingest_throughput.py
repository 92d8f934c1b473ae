"""Ingest throughput: upload + hash + sign through the real API, next to plain hashing.

Starts a throwaway mlcp (SQLite, temporary data dir) under gunicorn, uploads
one file through `mlcp push`'s client, and times, in the same run, on the
same file: `sha256sum`, and OpenSSL SHA-256 through hashlib. The server's
peak memory during the upload is printed too.

    .venv/bin/python bench/ingest_throughput.py [--size-mb 1024]
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe_machine  # noqa: E402


def _timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _hashlib_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlcp-bench-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, MLCP_DATA_DIR=str(tmp / "data"), PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="controlplane.settings")
        env.pop("DATABASE_URL", None)
        os.environ.update({k: env[k] for k in ("MLCP_DATA_DIR", "DJANGO_SETTINGS_MODULE")})
        import django

        django.setup()
        from tests.factories import write_large_onnx
        from tests.support.servers import free_port, rss_high_water_kb, wait_for_port
        from tests.support.webserver import worker_pids
        from cli.client import MlcpClient

        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        token = subprocess.run([sys.executable, "manage.py", "createtoken", "bench", "--role", "ci"], cwd=ROOT,
                               env=env, check=True, capture_output=True, text=True).stdout.strip()
        model_file = tmp / "model.onnx"
        write_large_onnx(model_file, args.size_mb * 1024 * 1024)
        size = model_file.stat().st_size
        # Warm the page cache so every contender reads from memory, not disk.
        _hashlib_sha256(model_file)

        t_sum, out = _timed(lambda: subprocess.run(["sha256sum", str(model_file)], capture_output=True, text=True,
                                                   check=True).stdout.split()[0])
        t_hashlib, digest = _timed(lambda: _hashlib_sha256(model_file))
        assert out == digest
        # What any ingest must at least do: read the bytes and write a durable copy.
        copy = tmp / "copy.onnx"
        t_copy, _ = _timed(lambda: subprocess.run(["sh", "-c", f"cp {model_file} {copy} && sync {copy}"], check=True))
        copy.unlink()

        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "controlplane.wsgi", "--bind",
                                   f"127.0.0.1:{port}", "--workers", "1", "--timeout", "900", "--log-level",
                                   "warning"], cwd=ROOT, env=env)
        try:
            wait_for_port(port, timeout=60, process=server)
            client = MlcpClient(f"http://127.0.0.1:{port}", token, timeout=900)
            client.ensure_model("bench")
            t_ingest, version = _timed(lambda: client.upload("/api/v1/models/bench/versions/", model_file,
                                                             "artifact", {"sha256": digest}))
            peak_mib = rss_high_water_kb(worker_pids(server.pid)[0]) / 1024
        finally:
            server.terminate()
            server.wait(timeout=30)
        assert version["digest"] == digest

    mib = size / 1024**2
    print(f"machine: {describe_machine()}")
    print(f"file: {mib:.0f} MiB ONNX model")
    print(f"{'what':<44}{'seconds':>9}{'MiB/s':>10}{'vs sha256sum':>14}")
    for name, seconds in [("sha256sum (coreutils)", t_sum), ("hashlib.sha256 (OpenSSL), 1 MiB reads", t_hashlib),
                          ("cp + sync (a durable copy, no hashing)", t_copy),
                          ("mlcp ingest: HTTP upload + hash + fsync + sign", t_ingest)]:
        print(f"{name:<44}{seconds:>9.2f}{mib / seconds:>10.0f}{seconds / t_sum:>13.2f}x")
    print(f"server worker peak RSS during ingest: {peak_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
