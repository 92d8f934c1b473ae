"""JSON Patch (RFC 6902) helpers shared by the workload adapter and the routers.

We write with JSON patches because they say exactly which fields change and
replace lists whole, with the same meaning on a real API server and the emulator.
"""

from __future__ import annotations

JSON_PATCH = "application/json-patch+json"


def set_map_entries(path: str, current: dict | None, wanted: dict) -> list[dict]:
    """Ops setting `wanted`'s keys in the string map at `path`, leaving other keys
    (another controller's annotations, say) alone; [] if all are already set."""
    if current is None:
        return [{"op": "add", "path": path, "value": dict(wanted)}]
    return [{"op": "add", "path": f"{path}/{pointer_token(key)}", "value": value}
            for key, value in wanted.items() if current.get(key) != value]


def guarded(ops: list[dict], resource_version: str | None) -> list[dict]:
    """`ops`, applied only to the object version they were computed from.

    With the resourceVersion we read inside the patch, the API server answers
    409 Conflict if the object changed since; the caller's retry re-reads.
    """
    if not ops or not resource_version:
        return ops
    return [{"op": "add", "path": "/metadata/resourceVersion", "value": resource_version}] + ops


def pointer_token(key: str) -> str:
    """`key` escaped as one JSON Pointer token (`mlcp.io/track` -> `mlcp.io~1track`)."""
    return key.replace("~", "~0").replace("/", "~1")
