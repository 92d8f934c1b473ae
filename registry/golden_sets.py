"""Golden-set files: `.npz` archives of labelled inputs, read without pickle and in bounded memory.

One reader for the registry (which checks a set when it is registered) and the
gates (which read it again from verified bytes).

Every upload is hostile: a small .npz can declare gigabytes (a zip bomb, or
headers that lie). So the reader decides from the zip's central directory and
each member's .npy header, before decompressing any array data, whether the
set is within the limits below, and then reads array data in bounded chunks,
checking that each member holds exactly the bytes its header promised.
Registration (`describe_golden_set`) never holds a whole array; the gates
(`load_golden_arrays`) hold exactly the declared, capped size.
"""

import io
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np
from numpy.lib import format as npy_format

from controlplane import untrusted_json
from controlplane.errors import InvalidInput, first_line

# Limits, checked against what the archive declares before anything is decompressed.
MAX_TOTAL_BYTES = 512 * 1024 * 1024  # uncompressed size of all members together
MAX_ARRAYS = 16  # members in the archive
MAX_EXAMPLES = 1_000_000  # rows of 'inputs' (and 'labels')
MAX_CLASSES = 100_000  # class names, or highest label + 1 when names are not given
MAX_CLASS_NAME_CHARS = 256
MAX_COMPRESSION_RATIO = 100  # declared / compressed size of one member...
RATIO_EXEMPT_BYTES = 1024 * 1024  # ...for members that declare more than this
MAX_DIRECTORY_BYTES = 64 * 1024  # the zip central directory (MAX_ARRAYS entries need a few KiB)
MAX_NPY_HEADER = 10_000  # numpy's own default cap on a .npy header
READ_CHUNK = 4 * 1024 * 1024  # bytes decompressed and checked at a time

_GOLDEN_KEYS = ("inputs", "labels")
_PLAIN_KINDS = "biuf"  # bool, signed and unsigned integers, floats
_EOCD, _EOCD_SIZE = b"PK\x05\x06", 22
_ZIP64_LOCATOR, _ZIP64_LOCATOR_SIZE, _ZIP64_EOCD = b"PK\x06\x07", 20, b"PK\x06\x06"


@dataclass(frozen=True)
class _Member:
    """One .npy member as declared by the zip directory and its header; no data read yet."""

    info: zipfile.ZipInfo
    key: str
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int

    @property
    def count(self) -> int:
        return math.prod(self.shape)


def load_golden_arrays(source: bytes | BinaryIO) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(inputs, labels as int64, class names) from .npz bytes or a binary file.

    Expects `inputs` (float32, [N, ...]), `labels` (integers in [0, classes)) and
    optionally `class_names` (strings; defaults to "0", "1", ...).
    Raises InvalidInput with code "invalid_golden_set", or "golden_set_too_large"
    when the archive declares more than the limits above.
    """
    inputs, labels, names, _ = _read_golden(source, keep_arrays=True)
    return inputs, labels.astype(np.int64), names


def describe_golden_set(source: bytes | BinaryIO) -> dict:
    """What the registry records about a golden set, checked the same way, holding no whole array."""
    _, _, names, (count, example_shape) = _read_golden(source, keep_arrays=False)
    return {"num_examples": count, "input_shape": example_shape, "class_names": list(names)}


def _read_golden(source, *, keep_arrays: bool):
    fh = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    size = fh.seek(0, io.SEEK_END)
    _check_directory(fh, size)
    try:
        with zipfile.ZipFile(fh) as archive:
            members = _members(archive)
            missing = [key for key in _GOLDEN_KEYS if key not in members]
            if missing:
                raise _invalid(f"the golden set has no {missing[0]!r} array")
            inputs_m, labels_m, names_m = members["inputs"], members["labels"], members.get("class_names")
            _check_declared(inputs_m, labels_m, names_m)
            inputs = _read_array(archive, inputs_m, keep_arrays, _require_finite)
            labels = _read_array(archive, labels_m, keep_arrays)
            low, high = (int(labels.min()), int(labels.max())) if keep_arrays else _label_range(archive, labels_m)
            names = _read_array(archive, names_m, True) if names_m is not None else None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError) as exc:
        raise _invalid(f"the golden set is not a readable .npz file: {first_line(exc)}") from exc
    class_names = _class_names(names, low, high)
    return inputs, labels, class_names, (inputs_m.shape[0], list(inputs_m.shape[1:]))


# ------------------------------------------------------------ before decompressing

def _check_directory(fh: BinaryIO, size: int) -> None:
    """Refuse archives with too many entries or an oversized central directory before zipfile parses it."""
    tail_len = min(size, _EOCD_SIZE + 65535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise _invalid("the golden set is not a readable .npz file: it is not a zip archive")
    _, _, _, _, entries, directory_size, directory_offset, _ = struct.unpack("<4s4H2LH", tail[at:at + _EOCD_SIZE])
    if entries == 0xFFFF or directory_size == 0xFFFFFFFF or directory_offset == 0xFFFFFFFF:
        entries, directory_size = _zip64_directory(fh, size - tail_len + at)
    if entries > MAX_ARRAYS:
        raise _too_large(f"the golden set has {entries} arrays; at most {MAX_ARRAYS} are accepted")
    if directory_size > MAX_DIRECTORY_BYTES:
        raise _too_large(f"the golden set's zip directory is {directory_size} bytes; "
                         f"at most {MAX_DIRECTORY_BYTES} are accepted")


def _zip64_directory(fh: BinaryIO, eocd_at: int) -> tuple[int, int]:
    if eocd_at < _ZIP64_LOCATOR_SIZE:
        raise _invalid("the golden set is not a readable .npz file: its zip64 directory is missing")
    fh.seek(eocd_at - _ZIP64_LOCATOR_SIZE)
    signature, _, record_at, _ = struct.unpack("<4sLQL", fh.read(_ZIP64_LOCATOR_SIZE))
    # An offset past the file (up to 2**64 - 1, more than a seek takes) is no directory: read nothing there.
    record = b""
    if record_at <= eocd_at - 56:
        fh.seek(record_at)
        record = fh.read(56)
    if signature != _ZIP64_LOCATOR or len(record) < 56 or record[:4] != _ZIP64_EOCD:
        raise _invalid("the golden set is not a readable .npz file: its zip64 directory is missing")
    _, _, _, _, _, _, _, entries, directory_size, _ = struct.unpack("<4sQ2H2L4Q", record)
    return entries, directory_size


def _members(archive: zipfile.ZipFile) -> dict[str, _Member]:
    infos = archive.infolist()
    if len(infos) > MAX_ARRAYS:
        raise _too_large(f"the golden set has {len(infos)} arrays; at most {MAX_ARRAYS} are accepted")
    declared = sum(info.file_size for info in infos)
    if declared > MAX_TOTAL_BYTES:
        raise _too_large(f"the golden set declares {declared} bytes uncompressed; "
                         f"at most {MAX_TOTAL_BYTES} bytes are accepted")
    members = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise _invalid(f"the golden set contains {info.filename!r}, which is not a .npy array")
        if info.flag_bits & 0x1:
            raise _invalid(f"the golden set's {info.filename!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _invalid(f"the golden set's {info.filename!r} uses zip compression method "
                           f"{info.compress_type}; only stored and deflated members are accepted")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_EXEMPT_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise _too_large(f"the golden set's {info.filename!r} declares {info.file_size} bytes from "
                             f"{info.compress_size} compressed (ratio {ratio:.0f}); at most "
                             f"{MAX_COMPRESSION_RATIO}:1 is accepted")
    if len({info.filename for info in infos}) != len(infos):
        raise _invalid("the golden set contains the same array twice")
    # Only now, with every entry judged from the directory, decompress the (small) .npy headers.
    for info in infos:
        member = _npy_header(archive, info)
        members[member.key] = member
    return members


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    """A member's dtype and shape from its .npy header, refusing anything but plain arrays of the right size."""
    name = info.filename
    with archive.open(info) as stream:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream, max_header_size=MAX_NPY_HEADER)
        else:
            raise _invalid(f"the golden set's {name!r} has .npy format version {version}; 1.0 and 2.0 are accepted")
        data_offset = stream.tell()
    if dtype.hasobject:
        raise _invalid("the golden set contains pickled Python objects; "
                       "only plain numeric and string arrays are accepted")
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in _PLAIN_KINDS + "U" \
            or dtype.itemsize == 0:
        raise _invalid(f"the golden set's {name!r} has dtype {dtype}; only plain numeric and string arrays "
                       "are accepted")
    if any(dim < 0 for dim in shape):
        raise _invalid(f"the golden set's {name!r} has a negative dimension in shape {list(shape)}")
    member = _Member(info, name.removesuffix(".npy"), dtype, tuple(shape), fortran_order, data_offset)
    described = member.count * dtype.itemsize
    if described != info.file_size - data_offset:
        raise _invalid(f"the golden set's {name!r} header describes {list(shape)} {dtype} ({described} bytes) "
                       f"but the archive declares {info.file_size - data_offset} bytes of data")
    return member


def _check_declared(inputs: _Member, labels: _Member, names: _Member | None) -> None:
    if inputs.dtype != np.float32:
        raise _invalid(f"'inputs' must be float32, got {inputs.dtype}")
    if len(inputs.shape) < 2 or inputs.shape[0] == 0:
        raise _invalid(f"'inputs' must be a non-empty batch [N, ...], got shape {list(inputs.shape)}")
    if inputs.shape[0] > MAX_EXAMPLES:
        raise _too_large(f"the golden set has {inputs.shape[0]} examples; at most {MAX_EXAMPLES} are accepted")
    if len(labels.shape) != 1 or labels.dtype.kind not in "iu":
        raise _invalid(f"'labels' must be a 1-D integer array, got {labels.dtype} {list(labels.shape)}")
    if labels.shape[0] != inputs.shape[0]:
        raise _invalid(f"{inputs.shape[0]} inputs but {labels.shape[0]} labels")
    if names is not None:
        if len(names.shape) != 1 or names.dtype.kind != "U":
            raise _invalid(f"'class_names' must be a 1-D array of strings, got {names.dtype} {list(names.shape)}")
        if names.shape[0] > MAX_CLASSES:
            raise _too_large(f"the golden set has {names.shape[0]} class names; at most {MAX_CLASSES} are accepted")
        if names.dtype.itemsize // 4 > MAX_CLASS_NAME_CHARS:
            raise _too_large(f"the golden set's class names are up to {names.dtype.itemsize // 4} characters; "
                             f"at most {MAX_CLASS_NAME_CHARS} are accepted")


# ------------------------------------------------------------------ reading data

def _chunks(archive: zipfile.ZipFile, member: _Member) -> Iterator[np.ndarray]:
    """The member's elements in flat file order, a bounded chunk at a time; its size and CRC are checked."""
    per_chunk = max(1, READ_CHUNK // member.dtype.itemsize)
    with archive.open(member.info) as stream:
        stream.read(member.data_offset)
        left = member.count
        while left:
            want = min(per_chunk, left) * member.dtype.itemsize
            data = stream.read(want)
            if len(data) != want:
                raise _invalid(f"the golden set's {member.info.filename!r} holds less data than its header declares")
            # zipfile checks the member's CRC as the last declared byte is read.
            yield np.frombuffer(data, dtype=member.dtype)
            left -= want // member.dtype.itemsize


def _read_array(archive, member: _Member, keep: bool, check=None) -> np.ndarray | None:
    flat = np.empty(member.count, dtype=member.dtype) if keep else None
    at = 0
    for chunk in _chunks(archive, member):
        if check is not None:
            check(member, chunk)
        if keep:
            flat[at:at + len(chunk)] = chunk
        at += len(chunk)
    if not keep:
        return None
    return flat.reshape(member.shape, order="F" if member.fortran_order else "C")


def _require_finite(member: _Member, chunk: np.ndarray) -> None:
    if not np.isfinite(chunk).all():
        raise _invalid(f"'{member.key}' contains NaN or infinite values")


def _label_range(archive, labels: _Member) -> tuple[int, int]:
    low, high = None, None
    for chunk in _chunks(archive, labels):
        if len(chunk):
            low = int(chunk.min()) if low is None else min(low, int(chunk.min()))
            high = int(chunk.max()) if high is None else max(high, int(chunk.max()))
    return low, high


def _class_names(names: np.ndarray | None, low: int, high: int) -> tuple[str, ...]:
    if names is None:
        if high >= MAX_CLASSES:
            raise _too_large(f"labels go up to {high}; at most {MAX_CLASSES} classes are accepted")
        names = [str(index) for index in range(high + 1)]
    if low < 0 or high >= len(names):
        raise _invalid(
            f"labels must lie in [0, {len(names)}) for {len(names)} class names, got {low}..{high}"
        )
    try:
        # A '<U' array holds raw UCS-4: a code point past U+10FFFF raises SystemError when made a str.
        names = tuple(str(name) for name in names)
    except (SystemError, ValueError):
        raise _invalid("a class name is not Unicode text") from None
    if any("\x00" in name for name in names):
        raise _invalid("a class name contains a NUL character")  # PostgreSQL's JSON columns cannot hold it
    if not all(untrusted_json.is_text(name) for name in names):
        # A lone surrogate: no database stores it, and it cannot be shown.
        raise _invalid("a class name is not Unicode text")
    return names


def _invalid(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="invalid_golden_set")


def _too_large(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="golden_set_too_large")
