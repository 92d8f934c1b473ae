"""Alertmanager's webhook payload (version 4), read strictly into plain values.

Alertmanager posts one notification per alert group: the group's status and
its alerts, each with labels, annotations, `startsAt` and a `fingerprint` (a
hash of its labels). Everything is checked and bounded here, before anything
acts, so a malformed or oversized notification changes nothing at all.
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from django.utils.dateparse import parse_datetime

from controlplane import untrusted_json
from controlplane.errors import InvalidInput

# Alertmanager's `max_alerts` is unlimited by default; a group of thousands is an incident of its own.
MAX_ALERTS = 500
MAX_LABELS = 64
MAX_NAME = 128
MAX_LABEL_VALUE = 1024
MAX_ANNOTATION_VALUE = 4096
# Matched whole (`fullmatch`): `$` would also accept a trailing newline, and "beef\n" is another fingerprint.
_FINGERPRINT = re.compile(r"[0-9a-f]{1,64}")
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ASCII digits only: str.isdigit() also says yes to "²" and "٢", which int() refuses or reads as 2.
_VERSION = re.compile(r"[0-9]{1,9}")
STATUSES = ("firing", "resolved")


@dataclass(frozen=True)
class Alert:
    """One alert of a notification."""

    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    fingerprint: str
    generator_url: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def model(self) -> str:
        return self.labels.get("model", "")

    @property
    def version(self) -> int | None:
        """The version the alert names; None when it names none, or when `version_unreadable`."""
        raw = self.labels.get("version", "")
        return int(raw) if _VERSION.fullmatch(raw) else None

    @property
    def version_unreadable(self) -> bool:
        """A `version` label that is no version number ("v1", "canary"): which version it blames is unknown.

        Never read as "no version": that would let the alert act on whatever is in flight or in production.
        An empty value is no label at all, as in Prometheus.
        """
        raw = self.labels.get("version", "")
        return raw != "" and not _VERSION.fullmatch(raw)

    @property
    def namespace(self) -> str:
        return self.labels.get("namespace", "")

    def as_evidence(self) -> dict:
        """What the audit trail keeps of it."""
        return {"alertname": self.name, "status": self.status, "fingerprint": self.fingerprint,
                "starts_at": self.starts_at.isoformat(), "labels": self.labels, "annotations": self.annotations,
                "generator_url": self.generator_url}


@dataclass(frozen=True)
class Notification:
    group_key: str
    receiver: str
    status: str
    alerts: tuple[Alert, ...]
    external_url: str = ""


def parse_notification(body) -> Notification:
    """The notification in `body` (decoded JSON); `InvalidInput` with a stable code for anything else."""
    if not isinstance(body, dict):
        raise InvalidInput("an Alertmanager notification is a JSON object", code="invalid_notification")
    if body.get("version") != "4":
        raise InvalidInput(f"only Alertmanager's webhook payload version \"4\" is read, not "
                           f"{str(body.get('version'))[:20]!r}", code="unsupported_version")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise InvalidInput("'alerts' must be a list", code="invalid_notification")
    if len(alerts) > MAX_ALERTS:
        raise InvalidInput(f"{len(alerts)} alerts in one notification; at most {MAX_ALERTS} are read (set "
                           "max_alerts in the webhook config)", code="too_many_alerts", limit=MAX_ALERTS)
    return Notification(
        group_key=_text(body.get("groupKey", ""), "groupKey", MAX_ANNOTATION_VALUE),
        receiver=_text(body.get("receiver", ""), "receiver", MAX_NAME),
        status=_status(body.get("status"), "status"),
        alerts=tuple(_alert(alert, n) for n, alert in enumerate(alerts)),
        external_url=_text(body.get("externalURL", ""), "externalURL", MAX_LABEL_VALUE),
    )


def _alert(raw, n: int) -> Alert:
    where = f"alerts[{n}]"
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} must be an object", code="invalid_notification")
    fingerprint = raw.get("fingerprint")
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise InvalidInput(f"{where}.fingerprint must be Alertmanager's hex fingerprint", code="invalid_notification")
    starts_at = _instant(raw.get("startsAt"), f"{where}.startsAt")
    labels = _pairs(raw.get("labels"), f"{where}.labels", MAX_LABEL_VALUE)
    if not labels.get("alertname"):
        raise InvalidInput(f"{where}.labels has no alertname", code="invalid_notification")
    # Stored as HandledAlert.alertname (128); a longer name fails here, before any alert of the group acts.
    _text(labels["alertname"], f"{where}.labels.alertname", MAX_NAME)
    return Alert(status=_status(raw.get("status"), f"{where}.status"), labels=labels,
                 annotations=_pairs(raw.get("annotations", {}), f"{where}.annotations", MAX_ANNOTATION_VALUE),
                 starts_at=starts_at, fingerprint=fingerprint,
                 generator_url=_text(raw.get("generatorURL", ""), f"{where}.generatorURL", MAX_LABEL_VALUE))


def _instant(value, where: str) -> datetime:
    """An RFC 3339 instant in UTC (Alertmanager's nanoseconds are cut to microseconds, the same each time)."""
    try:
        parsed = parse_datetime(value) if isinstance(value, str) and len(value) <= 64 else None
        # In UTC: PostgreSQL refuses offsets beyond 15:59 that Python accepts.
        parsed = parsed.astimezone(timezone.utc) if parsed is not None and parsed.tzinfo else None
    except (ValueError, OverflowError):  # February 30th; year 1 moved across midnight
        parsed = None
    if parsed is None:
        raise InvalidInput(f"{where} must be an RFC 3339 instant with a zone", code="invalid_notification")
    return parsed


def _pairs(raw, where: str, max_value: int) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} must be an object of strings", code="invalid_notification")
    if len(raw) > MAX_LABELS:
        raise InvalidInput(f"{where} has {len(raw)} entries; at most {MAX_LABELS}", code="too_many_labels",
                           limit=MAX_LABELS)
    pairs = {}
    for name, value in raw.items():
        if len(name) > MAX_NAME or not LABEL_NAME.fullmatch(name):
            raise InvalidInput(f"{where} has a name that is not a Prometheus label name", code="invalid_notification")
        pairs[name] = _text(value, f"{where}.{name}", max_value)
    return pairs


def _text(value, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be a string", code="invalid_notification")
    if len(value) > limit:
        raise InvalidInput(f"{where} is longer than {limit} characters", code="value_too_long", limit=limit)
    if "\x00" in value:
        raise InvalidInput(f"{where} holds a NUL character", code="invalid_notification")
    if not untrusted_json.is_text(value):
        # JSON's "\ud800" decodes to a lone surrogate, which no UTF-8 column (PostgreSQL's jsonb) can store.
        raise InvalidInput(f"{where} is not valid Unicode (a lone surrogate)", code="invalid_notification")
    return value


def _status(value, where: str) -> str:
    if value not in STATUSES:
        raise InvalidInput(f"{where} must be firing or resolved", code="invalid_notification")
    return value
