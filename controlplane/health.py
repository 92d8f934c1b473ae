"""Kubernetes probes for the web process: `/healthz` (alive) and `/readyz` (ready for traffic).

Unauthenticated and cheap. Liveness depends on nothing, so an outage of the
database restarts no pod; readiness asks what a request needs: the database
answers, and the artifact store takes a write.
"""

import logging

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from registry.storage import default_store

log = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request):
    """The process answers; nothing else is asked."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    """200 when every check passes, 503 naming the ones that fail."""
    checks = {"database": _check(_database), "artifact_store": _check(_artifact_store)}
    ready = all(result == "ok" for result in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _check(probe) -> str:
    try:
        probe()
    except Exception as exc:  # a probe reports any failure; it never raises into a 500
        # The answer is public: the exception's kind only; its text (hosts, paths) goes to the log.
        log.warning("readiness check %s failed: %s", probe.__name__, exc)
        return f"error: {type(exc).__name__}"
    return "ok"


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _artifact_store() -> None:
    default_store().check_writable()
