"""JSON from clients, parsed so that whatever it holds can be stored and encoded again.

Python's json module accepts things that later fail as 500s, after an upload's
bytes may already be stored:

- NaN and Infinity, as literals or as numbers such as 1e999 that overflow a
  float. SQLite's JSON check and PostgreSQL's jsonb both refuse them.
- Nesting just under what the decoder follows. `json.dumps`, which DRF's
  JSONField runs a few frames deeper, then raises RecursionError.
- NUL characters, which jsonb cannot hold.

`loads` refuses the first two, and `has_nul` finds the third, for fields that
name their own error. No client value mlcp takes (metadata, tags, policies,
strategies, signatures) is nested anywhere near MAX_DEPTH.
"""

import json
import math

MAX_DEPTH = 64


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def loads(text: str | bytes):
    """The parsed value; ValueError (with a message fit for a client) for anything the module doc refuses."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
    if depth_exceeds(value, MAX_DEPTH):
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return value


def depth_exceeds(value, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` levels; walked without recursion."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def has_nul(value) -> bool:
    """Whether parsed JSON holds a NUL character in a key or a string; walked without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
