"""A real Celery gate worker process against the test database and a test Redis."""

import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import redis

from tests.support.webserver import ROOT, server_env


@contextmanager
def celery_worker(broker_url: str, **env):
    """One solo worker on the `gates` and `default` queues; killed with its children when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "controlplane.celery", "worker", "-Q", "gates,default",
         "--pool", "solo", "--concurrency", "1", "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip",
         "--without-mingle"],
        cwd=ROOT, env=server_env(CELERY_BROKER_URL=broker_url, CELERY_VISIBILITY_TIMEOUT="5", **env),
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


@contextmanager
def empty_broker(broker_url: str):
    """The broker emptied before and after: a message left by an earlier test (the database reuses ids) must not
    reach this test's worker."""
    redis.Redis.from_url(broker_url).flushdb()
    try:
        yield broker_url
    finally:
        redis.Redis.from_url(broker_url).flushdb()
