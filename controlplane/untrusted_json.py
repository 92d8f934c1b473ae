"""JSON from clients, parsed so that whatever it holds can be stored and encoded again.

Python's json module accepts things that later fail as 500s, after an upload's
bytes may already be stored:

- NaN and Infinity, as literals or as numbers such as 1e999 that overflow a
  float. SQLite's JSON check and PostgreSQL's jsonb both refuse them.
- Nesting just under what the decoder follows. `json.dumps`, which DRF's
  JSONField runs a few frames deeper, then raises RecursionError.
- Lone surrogates ("\\ud800"), which no UTF-8 encoder takes: PostgreSQL refuses
  them, and where SQLite stored one, every later rendering of its row failed.
- NUL characters, which jsonb cannot hold.

`loads` (and `Decoder`, for DRF's JSON fields) refuses the first three;
`has_nul` finds the last, for fields that name their own error. No client value
mlcp takes (metadata, tags, policies, strategies, signatures) nests anywhere
near MAX_DEPTH.
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


class Decoder(json.JSONDecoder):
    """json's decoder with the refusals the module doc lists; for `json.loads(..., cls=Decoder)` and DRF's
    JSONField(decoder=Decoder). Every refusal is a ValueError with a message fit for a client."""

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, "parse_constant": _refuse_constant, "parse_float": _finite_float})

    def decode(self, s, *args, **kwargs):
        try:
            value = super().decode(s, *args, **kwargs)
        except RecursionError:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
        _refuse_unstorable(value)
        return value


def loads(text: str | bytes):
    """The parsed value; ValueError (with a message fit for a client) for anything the module doc refuses."""
    return json.loads(text, cls=Decoder)


def _refuse_unstorable(value) -> None:
    """ValueError for nesting past MAX_DEPTH, or a string or key that is not Unicode text."""
    for item, depth in _nodes(value):
        if isinstance(item, str):
            if not is_text(item):
                raise ValueError("a string holds a lone surrogate, which is not Unicode text")
        elif depth > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep")


def _nodes(value):
    """(node, depth) for every list, object, key and string in parsed JSON, without recursion: it may nest
    deeper than Python's stack. Depth counts lists and objects, 1 for the outermost."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (str, dict, list)):
            yield item, depth
        if isinstance(item, (dict, list)):
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)


def is_text(value: str) -> bool:
    """Whether a str is Unicode text: UTF-8 encodes it (a lone surrogate, such as JSON's "\\ud800", does not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_number(value) -> bool:
    """A number a float holds: not a bool, NaN or Infinity, nor an integer past a float's range (which
    float() and math.isfinite raise OverflowError on)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def has_nul(value) -> bool:
    """Whether parsed JSON holds a NUL character in a key or a string."""
    return any(isinstance(item, str) and "\x00" in item for item, _ in _nodes(value))
