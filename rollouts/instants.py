"""The instants a replay of the analysis may name, as the API and `manage.py analyze` accept them."""

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.utils.dateparse import parse_datetime

from controlplane.errors import InvalidInput

# The instants `at` may name: any a rollout could have run at, with room on both sides for the longest window
# (_MAX_INT_PARAM seconds, 68 years) before datetime arithmetic overflows.
_EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=dt_timezone.utc)


def parse_instant(raw: str | None) -> datetime:
    """An ISO 8601 instant, in UTC; one without a zone is UTC.

    Converted to UTC here: Python accepts offsets up to 23:59, PostgreSQL only up to 15:59, so
    `2024-03-01T12:00-18:00` sent on as written would be a database error (a 500), not an instant.
    """
    try:
        parsed = parse_datetime(raw.strip().replace(" ", "T")) if raw else None
    except ValueError:  # well formed but no such instant, e.g. February 30th
        parsed = None
    if parsed is None:
        raise InvalidInput("'at' must be an ISO 8601 instant, e.g. 2024-03-01T12:30:00Z", code="invalid_time")
    try:
        parsed = parsed.astimezone(dt_timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0
        parsed = _EARLIEST_INSTANT - timedelta(days=1)
    if not _EARLIEST_INSTANT <= parsed < _LATEST_INSTANT:
        raise InvalidInput(f"'at' must be an instant from {_EARLIEST_INSTANT:%Y-%m-%d} until the year "
                           f"{_LATEST_INSTANT.year}", code="invalid_time")
    return parsed
