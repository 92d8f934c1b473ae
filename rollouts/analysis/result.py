"""The shape every analysis check returns: a verdict, one sentence saying
why, and the numbers that decided it, ready to be stored as evidence.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from datetime import timedelta


class Verdict(enum.StrEnum):
    """What a check concluded. Inconclusive holds a rollout; it never promotes.

    Invalid says the experiment itself is broken (the canary does not get the
    traffic share it was set to): it holds like inconclusive, but says why.
    """

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    INVALID = "invalid"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Base of every check's result; subclasses add the deciding numbers as fields."""

    verdict: Verdict
    reason: str

    def evidence(self) -> dict:
        """All fields as plain JSON values (NaN and infinities become None)."""
        return to_json_value(self)


def to_json_value(value):
    """Turn nested dataclasses, dicts, tuples, enums and floats into strict JSON values.

    Walks dataclass fields itself rather than through `dataclasses.asdict`,
    which deep-copies everything first: a controller tick turns thousands of
    analyses into evidence, and the copy was most of that cost. The exact
    types most values have are tried first, for the same reason.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, timedelta):
        return value.total_seconds()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return to_json_value(value.item())
    return value
