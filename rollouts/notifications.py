"""Rollout outcomes sent to the model's webhook, signed so receivers can trust them.

The body is JSON; `X-Mlcp-Signature: sha256=<hex>` is its HMAC-SHA256 under
`settings.MLCP_WEBHOOK_SECRET`. A failing webhook is logged and never blocks
the rollout or rollback that sent it.
"""

import hashlib
import hmac
import json
import logging

import requests
from django.conf import settings

log = logging.getLogger(__name__)
TIMEOUT_S = 5.0


def sign(body: bytes, secret: str | None = None) -> str:
    """The X-Mlcp-Signature value for `body`."""
    key = (secret or settings.MLCP_WEBHOOK_SECRET).encode()
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def notify_rollout(rollout, event: str, reason: str = "", evidence: dict | None = None) -> bool:
    """POST the rollout's outcome to its model's webhook; True if it was accepted."""
    url = rollout.model.notification_webhook
    if not url:
        return False
    payload = {
        "event": event,
        "model": rollout.model.name,
        "rollout": rollout.pk,
        "version": rollout.version.number,
        "stable_version": rollout.stable_version.number if rollout.stable_version_id else None,
        "phase": rollout.phase,
        "reason": reason,
        "evidence": evidence or {},
    }
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    try:
        response = requests.post(url, data=body, timeout=TIMEOUT_S, headers={
            "Content-Type": "application/json", "X-Mlcp-Signature": sign(body), "X-Mlcp-Event": event})
        response.raise_for_status()
    except requests.RequestException as exc:
        log.warning("webhook for %s (%s) to %s failed: %s", rollout, event, url, exc)
        return False
    return True
