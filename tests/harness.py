"""Runs the test suite against throwaway servers: `python -m tests.harness`.

It starts a PostgreSQL cluster on loopback in a temporary directory, then
runs pytest twice: on SQLite (the embedded default) and on that PostgreSQL.
The registry suite stores artifacts on the filesystem in the SQLite pass and
in S3 (moto's server on loopback) in the PostgreSQL pass, unless
MLCP_TEST_ARTIFACT_STORE says otherwise; tests marked `both_stores` run on
each in both. Redis, Prometheus, moto and the Kubernetes emulator are started
by fixtures.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def _pg_bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: install the 'postgresql' package (make test does)")
    return found


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class ThrowawayPostgres:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="mlcp-pg-"))
        self.port = free_port()

    def __enter__(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        subprocess.run(_as_postgres_user([_pg_bin("initdb"), "-D", str(data), "-U", "mlcp", "--auth=trust",
                                          "--encoding=UTF8", "--no-sync"]), check=True, stdout=subprocess.DEVNULL)
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        subprocess.run(_as_postgres_user([_pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l",
                                          str(self.dir / "log"), "-w", "start"]), check=True,
                       stdout=subprocess.DEVNULL)
        wait_for_port(self.port)
        return f"postgres://mlcp@127.0.0.1:{self.port}/postgres"

    def __exit__(self, *exc):
        subprocess.run(_as_postgres_user([_pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                                          "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def _pytest(env: dict, args: list[str]) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    results = {}
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="mlcp-test-") as data_dir:
            env = {"MLCP_TEST_ARTIFACT_STORE": "filesystem", **os.environ, "MLCP_DATA_DIR": data_dir}
            env.pop("DATABASE_URL", None)
            print("==> test suite on SQLite (registry artifacts on the filesystem)", flush=True)
            results["sqlite"] = _pytest(env, args.pytest_args)
    if args.db in ("postgres", "both"):
        with ThrowawayPostgres() as url, tempfile.TemporaryDirectory(prefix="mlcp-test-") as data_dir:
            env = {"MLCP_TEST_ARTIFACT_STORE": "s3", **os.environ, "MLCP_DATA_DIR": data_dir, "DATABASE_URL": url}
            # The SQLite run covers the storage-bound slow tests (on both stores); they do not depend on the database.
            extra = ["-m", "not slow"] if args.db == "both" else []
            print("==> test suite on PostgreSQL (registry artifacts in S3 on moto's server)", flush=True)
            started = time.monotonic()
            results["postgres"] = _pytest(env, [*extra, *args.pytest_args])
            print(f"==> PostgreSQL run took {time.monotonic() - started:.0f}s", flush=True)
    for db, code in results.items():
        print(f"==> {db}: {'passed' if code == 0 else f'FAILED (exit {code})'}")
    return 0 if all(code == 0 for code in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
