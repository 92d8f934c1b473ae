"""Retries for Kubernetes API calls, and the translation of API errors.

An operation is retried as a whole, so a read-modify-write closure re-reads on
409 Conflict; 429, 5xx and connection failures back off exponentially with full
jitter. Anything else (404, 422, 403, ...) surfaces at once as an mlcp error.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

from k8s.errors import (ClusterConflict, ClusterForbidden, ClusterObjectMissing, ClusterRejected,
                        ClusterUnavailable)

T = TypeVar("T")
log = logging.getLogger(__name__)

_RETRIED_STATUSES = {409, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one operation."""

    attempts: int = 6
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based): full jitter, capped."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        delay = random.uniform(0, ceiling)
        if retry_after_s is not None:
            # The server knows its own load better than our backoff does, but a
            # huge Retry-After must not stall the controller's tick.
            delay = max(delay, min(retry_after_s, self.max_delay_s))
        return delay


def call_with_retries(operation: Callable[[], T], *, what: str, policy: RetryPolicy,
                      sleep: Callable[[float], None] = time.sleep, **context) -> T:
    """Run `operation` until it succeeds, retrying transient API failures.

    `what` names the operation for messages ("read deployment ns/web");
    `context` (namespace=..., name=...) is attached to the raised error.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except ApiException as exc:
            status = exc.status or 0
            if status not in _RETRIED_STATUSES:
                raise translate_api_error(exc, what, **context) from exc
            if attempt == policy.attempts:
                raise _exhausted(status, what, attempt, context) from exc
            log.info("retrying %s after HTTP %s (attempt %d)", what, status, attempt)
            sleep(policy.delay(attempt, _retry_after(exc)))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if attempt == policy.attempts:
                raise ClusterUnavailable(
                    f"Kubernetes API unreachable: could not {what} after {attempt} attempts ({exc})",
                    attempts=attempt, **context) from exc
            log.info("retrying %s after %s (attempt %d)", what, type(exc).__name__, attempt)
            sleep(policy.delay(attempt))
    raise AssertionError("unreachable: the loop returns or raises")


def translate_api_error(exc: ApiException, what: str, **context):
    """The mlcp error for a non-retried API failure."""
    status = exc.status or 0
    message = f"Kubernetes API refused to {what}: HTTP {status} {exc.reason or ''}".strip()
    if status == 404:
        return ClusterObjectMissing(f"Kubernetes object not found: could not {what}", **context)
    if status in (401, 403):
        return ClusterForbidden(message + " (check the controller's Role)", status=status, **context)
    if status == 409:
        return ClusterConflict(message, status=status, **context)
    if 400 <= status < 500:
        return ClusterRejected(message, status=status, body=_short(exc.body), **context)
    return ClusterUnavailable(message, status=status, **context)


def _exhausted(status: int, what: str, attempts: int, context: dict):
    if status == 409:
        return ClusterConflict(
            f"Kubernetes object kept changing: could not {what} after {attempts} attempts",
            attempts=attempts, **context)
    return ClusterUnavailable(
        f"Kubernetes API kept failing (HTTP {status}): could not {what} after {attempts} attempts",
        status=status, attempts=attempts, **context)


def _retry_after(exc: ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _short(body, limit: int = 500) -> str:
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    return text[:limit]
