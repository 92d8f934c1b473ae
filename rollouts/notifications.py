"""Rollout outcomes sent to the model's webhook: signed per Standard Webhooks, only to public addresses.

Each POST carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
under `settings.MLCP_WEBHOOK_SECRET` (`whsec_<base64>`, mlcp's own secret), so
a receiver checks who sent it and when, refuses old timestamps, and ignores an
id it has seen: a captured request cannot be replayed. With a webhook set and
no secret, nothing is sent (the log and `manage.py check` say why).

A webhook URL may only resolve to public addresses, or to networks listed in
`MLCP_WEBHOOK_ALLOW_PRIVATE`: otherwise a model's owner could make mlcp POST
to loopback, the cluster, or the cloud metadata service. The rule is checked
when the URL is configured (`validate_webhook_url`) and again at delivery,
since DNS can change in between; delivery connects to the very address it
checked, follows no redirect and uses no proxy.

This module is the wall around one POST (`deliver`, which never raises);
`rollouts.outbox` decides when to POST and how often, so a failing or slow
webhook never blocks the rollout or rollback that reported it.
"""

import base64
import binascii
import http.client
import ipaddress
import json
import socket
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from standardwebhooks import Webhook

from controlplane.errors import InvalidInput

TIMEOUT_S = 5.0
SECRET_PREFIX = "whsec_"
# Standard Webhooks asks for secrets of 24 to 64 random bytes.
SECRET_BYTES = range(24, 65)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# ---------------------------------------------------------------- configuration

def signing_secret() -> bytes:
    """The key in MLCP_WEBHOOK_SECRET; ImproperlyConfigured if it is unset or not `whsec_<base64>`."""
    secret = settings.MLCP_WEBHOOK_SECRET
    if not secret:
        raise ImproperlyConfigured("MLCP_WEBHOOK_SECRET is not set; webhooks are not sent without their own "
                                   "secret (make one: " + new_secret_command() + ")")
    try:
        if not secret.startswith(SECRET_PREFIX):
            raise ValueError
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (ValueError, binascii.Error):
        raise ImproperlyConfigured(f"MLCP_WEBHOOK_SECRET must read {SECRET_PREFIX}<base64>") from None
    if len(key) not in SECRET_BYTES:
        raise ImproperlyConfigured(f"MLCP_WEBHOOK_SECRET holds {len(key)} bytes; use 24 to 64 random bytes")
    return key


def new_secret_command() -> str:
    return ("python -c \"import base64, secrets; "
            "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\"")


def allowed_private_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """MLCP_WEBHOOK_ALLOW_PRIVATE as networks; ImproperlyConfigured on an entry that is not a CIDR."""
    networks = []
    for entry in settings.MLCP_WEBHOOK_ALLOW_PRIVATE:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"MLCP_WEBHOOK_ALLOW_PRIVATE: {entry!r} is not a network "
                                       "such as 10.0.0.0/8") from None
    return networks


def validate_webhook_url(url: str) -> str:
    """`url` if mlcp may POST to it; InvalidInput(code="webhook_url_refused") if not.

    A host name that does not resolve now is accepted: delivery checks it
    again, and refuses it then if it points somewhere it must not.
    """
    _, host, port = _parse(url)
    try:
        _public_address(host, port)
    except socket.gaierror:
        pass
    return url


def _parse(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme, parts.hostname, parts.port
    except ValueError:
        raise _refused(url, "it is not a well-formed URL") from None
    if scheme not in ("http", "https") or not host:
        raise _refused(url, "it must be an http:// or https:// URL with a host")
    try:
        host.encode("idna")  # what getaddrinfo does with a str host, raising UnicodeError, not gaierror
    except UnicodeError:
        raise _refused(url, "its host is not a valid domain name") from None
    return scheme, host, port or (443 if scheme == "https" else 80)


def _public_address(host: str, port: int) -> str:
    """The address to connect to, if every address `host` resolves to is allowed (a round-robin name with one
    private address among public ones could land on it); socket.gaierror if it does not resolve."""
    resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in resolved))
    forbidden = [str(address) for address in addresses if not _is_allowed(address)]
    if forbidden:
        raise _refused(host, f"it resolves to {', '.join(forbidden)}, which is not a public address "
                             "(allow a private network with MLCP_WEBHOOK_ALLOW_PRIVATE)")
    return str(addresses[0])


def _is_allowed(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    if any(address in network for network in allowed_private_networks()):
        return True
    return address.is_global and not (address.is_loopback or address.is_link_local or address.is_private
                                      or address.is_multicast or address.is_reserved or address.is_unspecified)


def _refused(what: str, why: str) -> InvalidInput:
    return InvalidInput(f"webhook {what} refused: {why}", code="webhook_url_refused")


# ---------------------------------------------------------------- delivery

def outcome_payload(rollout, event: str, reason: str = "", evidence: dict | None = None) -> dict:
    """The body that tells a receiver what happened to `rollout`, as of now (fixed when it is enqueued).

    Plain JSON values only (anything else becomes its text): it is stored in a JSONField inside the
    transaction that ends the rollout, which must not fail over a notification.
    """
    return json.loads(json.dumps({
        "event": event,
        "model": rollout.model.name,
        "rollout": rollout.pk,
        "version": rollout.version.number,
        "stable_version": rollout.stable_version.number if rollout.stable_version_id else None,
        "phase": rollout.phase,
        "reason": reason,
        "evidence": evidence or {},
    }, default=str))


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class DeliveryResult:
    """What one POST came to: an HTTP status, or an error; `permanent` when trying again cannot help."""

    status: int | None = None
    error: str = ""
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def deliver(url: str, message_id: str, payload: dict, *, at: datetime | None = None) -> DeliveryResult:
    """POST `payload` to `url`, signed, as message `message_id` (the same on every retry); never raises.

    The timestamp is the attempt's (`at`), so a receiver's replay window counts
    from this attempt and not from the outcome.
    """
    try:
        signer = Webhook(signing_secret())
    except ImproperlyConfigured as exc:
        return DeliveryResult(error=str(exc), permanent=True)
    body = json.dumps(payload, sort_keys=True, default=str)
    sent_at = at or datetime.now(timezone.utc)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signer.sign(message_id, sent_at, body),
        "X-Mlcp-Event": str(payload.get("event", "")),
    }
    try:
        status = _post(url, body.encode(), headers)
    except (InvalidInput, ImproperlyConfigured) as exc:
        return DeliveryResult(error=str(exc), permanent=True)
    except (OSError, http.client.HTTPException) as exc:
        # A name that does not resolve (gaierror) is an OSError too: DNS may come back.
        return DeliveryResult(error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if not 200 <= status < 300:
        return DeliveryResult(status=status, error=f"HTTP {status}")
    return DeliveryResult(status=status)


def _post(url: str, body: bytes, headers: dict) -> int:
    scheme, host, port = _parse(url)
    address = _public_address(host, port)
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(host, port, address=address, timeout=TIMEOUT_S)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address checked before, not to what the host name resolves to a moment later;
    the host name still goes into the Host header (and, over TLS, into SNI and the certificate check)."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def connect(self):
        super().connect()
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)
