"""Reading a `.pt2` archive's index before anything loads it: no pickled part gets through.

`torch.export.load` (torch 2.13) unpickles several parts of an archive: weights
and constants whose config says `use_pickle`, custom and opaque object
constants, legacy `.pt` weight files, and the sample inputs (it retries them
with `weights_only=False` when the safe load fails). A crafted archive runs
code through any of them. `safe_pt2_archive()` reads only the zip index and
the JSON configs, refuses every part that would be unpickled, and returns a
copy whose sample inputs are empty (the conversion makes its own inputs), so
what remains is JSON and raw tensor bytes. The conversion still runs only in
the sandbox.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import PurePosixPath

from controlplane.errors import InvalidInput

MAX_MEMBERS = 10_000
MAX_CONFIG_BYTES = 16 * 1024**2
MAX_TOTAL_BYTES = 2 * 1024**3  # the worker holds the upload and its rewritten copy in memory
MAX_COMPRESSION_RATIO = 100
_RAW_PAYLOAD = re.compile(r"data/(weights/weight_\d+|constants/tensor_\d+)")
_ALLOWED = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json|data/weights/[\w.-]+_weights_config\.json|data/constants/[\w.-]+_constants_config\.json"
    r"|data/sample_inputs/[\w.-]+\.pt|data/(weights/weight_\d+|constants/tensor_\d+))")
_PICKLE_START = re.compile(rb"\A(\x80[\x02-\x05]|PK\x03\x04)")


def safe_pt2_archive(pt2_bytes: bytes) -> bytes:
    """A copy of the archive that `torch.export.load` reads without unpickling anything.

    Raises InvalidInput with code "unsafe_archive" naming the part that would be
    unpickled, or "invalid_archive" when the file is not a pt2 archive at all.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(pt2_bytes))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise InvalidInput(f"the .pt2 file is not a zip archive: {exc}", code="invalid_archive") from exc
    root = _checked_index(members)
    parts = {member.filename[len(root) + 1:]: member for member in members if not member.is_dir()}
    archive_format = parts.get("archive_format")
    if archive_format is None or archive_format.file_size > 16 or archive.read(archive_format) != b"pt2":
        raise InvalidInput("the archive is not a torch.export program (no archive_format 'pt2')",
                           code="invalid_archive")
    for name in parts:
        if not _ALLOWED.fullmatch(name):
            raise _unsafe(f"the archive holds '{name}', a part torch.export.load would unpickle or that mlcp "
                          "does not know; save the program with torch.export.save and plain tensors")
    for name, member in parts.items():
        if name.endswith("_config.json"):
            _check_payload_config(name, _read_config(archive, member), parts)
    for name, member in parts.items():
        if _RAW_PAYLOAD.fullmatch(name) and _PICKLE_START.match(archive.open(member).read(4)):
            raise _unsafe(f"'{name}' should hold raw tensor bytes but holds a pickle")
    return _rewritten(archive, parts, root)


def _checked_index(members: list[zipfile.ZipInfo]) -> str:
    if len(members) > MAX_MEMBERS:
        raise InvalidInput(f"the archive has {len(members)} members, over {MAX_MEMBERS}", code="invalid_archive")
    total = 0
    roots = set()
    if len({member.filename for member in members}) != len(members):
        raise _unsafe("the archive names a member twice: which one a reader takes is not defined")
    for member in members:
        path = PurePosixPath(member.filename)
        if path.is_absolute() or ".." in path.parts or "\\" in member.filename or not path.parts:
            raise _unsafe(f"the archive member name {member.filename[:200]!r} is not a plain relative path")
        roots.add(path.parts[0])
        total += member.file_size
        if member.compress_size and member.file_size / member.compress_size > MAX_COMPRESSION_RATIO:
            raise InvalidInput(f"'{member.filename}' expands {member.file_size // member.compress_size}x, "
                               f"over {MAX_COMPRESSION_RATIO}x", code="invalid_archive")
    if total > MAX_TOTAL_BYTES:
        raise InvalidInput(f"the archive declares {total} bytes, over {MAX_TOTAL_BYTES}", code="invalid_archive")
    if len(roots) != 1:
        raise InvalidInput("a .pt2 archive has exactly one root folder", code="invalid_archive")
    return roots.pop()


def _read_config(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> dict:
    if member.file_size > MAX_CONFIG_BYTES:
        raise InvalidInput(f"'{member.filename}' is over {MAX_CONFIG_BYTES} bytes", code="invalid_archive")
    try:
        config = json.loads(archive.read(member))
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"'{member.filename}' is not JSON: {exc}", code="invalid_archive") from exc
    if not isinstance(config, dict) or not isinstance(config.get("config", {}), dict):
        raise InvalidInput(f"'{member.filename}' is not a payload config", code="invalid_archive")
    return config.get("config", {})


def _check_payload_config(name: str, config: dict, parts: dict) -> None:
    folder = name.rsplit("/", 1)[0]
    for fqn, meta in config.items():
        if not isinstance(meta, dict):
            raise InvalidInput(f"'{name}' entry {str(fqn)[:100]!r} is not an object", code="invalid_archive")
        if meta.get("use_pickle") is not False:
            raise _unsafe(f"'{name}' marks '{str(fqn)[:100]}' as pickled (use_pickle); "
                          "torch.export.load would unpickle it")
        target = f"{folder}/{meta.get('path_name')}"
        if not _RAW_PAYLOAD.fullmatch(target) or target not in parts:
            raise _unsafe(f"'{name}' entry '{str(fqn)[:100]}' points at {str(meta.get('path_name'))[:100]!r}, "
                          "not a raw tensor file of the archive")


def _rewritten(archive: zipfile.ZipFile, parts: dict, root: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as copy:
        for name, member in parts.items():
            # Empty sample inputs load as {} without torch.load; the conversion makes its own inputs.
            copy.writestr(f"{root}/{name}", b"" if name.startswith("data/sample_inputs/") else archive.read(member))
    return out.getvalue()


def _unsafe(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="unsafe_archive")
