"""Read an ONNX model's declared inputs, outputs and opsets from its file, refusing hostile files.

Every upload is treated as hostile. The walk reads the protobuf framing
itself and seeks past every field it does not need (weights, doc strings,
node bodies), so any file, however large, is read in constant memory:

- only small, capped fields are ever buffered (opset entries, graph
  input/output ValueInfos, tensor names); an over-cap field is refused
  with `onnx_field_too_large` rather than read;
- every tensor anywhere in the model (initializers, sparse initializers,
  node attributes, subgraphs, training graphs, model-local functions) is
  checked for external data, which is refused with `external_data_refused`:
  onnxruntime would otherwise read whatever file the model names;
- message nesting is capped, so a deeply nested file is a clean
  `malformed_onnx`, never a RecursionError.

`refuse_external_data` runs the same walk over bytes already in memory, for
the gate workers to call again before handing bytes to onnxruntime.
"""

import io
from typing import BinaryIO

import onnx
from google.protobuf.message import DecodeError

from controlplane.errors import InvalidInput

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

# Limits on what the walk buffers. Legitimate exporters stay far below them;
# a file that goes past one is refused instead of read (see module docstring).
MAX_SMALL_FIELD = 64 * 1024  # any one buffered message: an opset entry, an input/output ValueInfo
MAX_NAME_CHARS = 256  # graph input/output names, their symbolic dims, opset domains
MAX_OPSETS = 64  # opset_import entries of the model
MAX_RANK = 64  # dims in one input/output shape
MAX_SIGNATURE_ENTRIES = 1024  # inputs, and outputs, recorded for a version (after removing initializers)
MAX_SIGNATURE_BYTES = 1024 * 1024  # all input/output ValueInfos read (old exporters list every weight as input)
MAX_RECORDED_SIGNATURE_BYTES = 64 * 1024  # ValueInfo bytes behind what is stored and listed per version
MAX_NESTING = 64  # protobuf messages inside messages (graphs in attributes in nodes in graphs...)

# Field numbers from onnx.proto.
_MODEL_IR_VERSION, _MODEL_GRAPH, _MODEL_OPSET_IMPORT = 1, 7, 8
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 5, 11, 12
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
_TENSOR_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_ENTRY_KEY, _ENTRY_VALUE = 1, 2  # StringStringEntryProto

# Where tensors can hide: for each message kind, the length-delimited fields
# that hold another message the walk must enter. Everything else is skipped.
_TENSOR, _SPARSE, _GRAPH, _NODE, _ATTRIBUTE, _FUNCTION, _TRAINING, _MODEL = (
    "tensor", "sparse tensor", "graph", "node", "attribute", "function", "training info", "model")
_CHILDREN = {
    _MODEL: {_MODEL_GRAPH: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},  # initialization, algorithm
    _FUNCTION: {7: _NODE, 11: _ATTRIBUTE},  # node, attribute_proto (default values)
    _GRAPH: {1: _NODE, _GRAPH_INITIALIZER: _TENSOR, 15: _SPARSE},  # node, initializer, sparse_initializer
    _NODE: {5: _ATTRIBUTE},
    # t, g, tensors, graphs, sparse_tensor, sparse_tensors
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},  # values, indices
    _TENSOR: {},
}


def _malformed(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="malformed_onnx")


def _too_large(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="onnx_field_too_large")


def _read_varint(fh: BinaryIO) -> int | None:
    shift = result = 0
    while True:
        byte = fh.read(1)
        if not byte:
            if shift == 0:
                return None
            raise _malformed("the ONNX file ends in the middle of a field")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise _malformed("the ONNX file has a malformed varint")


def _fields(fh: BinaryIO, end: int):
    """Yield (field number, wire type, length or value) up to offset `end`.

    For a length-delimited field the caller either consumes exactly `length`
    bytes or leaves the position where it was; anything left is skipped.
    """
    while fh.tell() < end:
        key = _read_varint(fh)
        if key is None:
            return
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value = _read_varint(fh)
            if value is None:
                raise _malformed("the ONNX file ends in the middle of a field")
            yield number, wire, value
        elif wire == _I64:
            fh.seek(8, 1)
            yield number, wire, None
        elif wire == _I32:
            fh.seek(4, 1)
            yield number, wire, None
        elif wire == _LEN:
            length = _read_varint(fh)
            start = fh.tell()
            if length is None or start + length > end:
                raise _malformed("the ONNX file is truncated or is not an ONNX model")
            yield number, wire, length
            fh.seek(start + length)
        else:
            raise _malformed("the file is not an ONNX model (unknown wire type)")
    if fh.tell() > end:
        raise _malformed("the ONNX file is truncated or is not an ONNX model")


def _read_small(fh: BinaryIO, length: int, what: str, limit: int = MAX_SMALL_FIELD) -> bytes:
    if length > limit:
        raise _too_large(f"the ONNX model's {what} is {length} bytes; at most {limit} bytes are accepted")
    return fh.read(length)


class _Walk:
    """One pass over a model file: external-data check always, signature collection optionally."""

    def __init__(self, fh: BinaryIO, *, collect_signature: bool):
        self.fh = fh
        self.collect = collect_signature
        self.inputs: list[tuple[dict, int]] = []  # (entry, its ValueInfo's size in bytes)
        self.outputs: list[tuple[dict, int]] = []
        self.signature_bytes = 0
        self.ir_version: int | None = None
        self.opsets: dict[str, int] = {}
        self.main_graphs: list[tuple[int, int]] = []  # (start, end) of ModelProto.graph

    def model(self, size: int) -> None:
        self.fh.seek(0)
        self._message(_MODEL, size, depth=0)

    def _message(self, kind: str, end: int, depth: int) -> None:
        if depth > MAX_NESTING:
            raise _malformed(f"the ONNX model nests messages more than {MAX_NESTING} levels deep")
        if kind == _TENSOR:
            self._tensor(end)
            return
        children = _CHILDREN[kind]
        for number, wire, value in _fields(self.fh, end):
            if wire == _VARINT and kind == _MODEL and number == _MODEL_IR_VERSION:
                self.ir_version = value
            elif wire != _LEN:
                continue
            elif self.collect and depth == 0 and number == _MODEL_OPSET_IMPORT:
                self._opset(value)
            elif self.collect and depth == 1 and kind == _GRAPH and number in (_GRAPH_INPUT, _GRAPH_OUTPUT):
                self._value_info(value, number == _GRAPH_INPUT)
            elif number in children:
                start = self.fh.tell()
                if depth == 0 and number == _MODEL_GRAPH:
                    self.main_graphs.append((start, start + value))
                self._message(children[number], start + value, depth + 1)

    def _tensor(self, end: int) -> None:
        name, external, location = "", False, ""
        for number, wire, value in _fields(self.fh, end):
            if number == _TENSOR_DATA_LOCATION and wire == _VARINT:
                external = external or value == _TENSOR_EXTERNAL
            elif number == _TENSOR_NAME and wire == _LEN and value <= MAX_SMALL_FIELD:
                name = self.fh.read(value).decode("utf-8", "replace")
            elif number == _TENSOR_EXTERNAL_DATA and wire == _LEN:
                external = True
                location = location or _entry_value(self.fh, self.fh.tell() + value, b"location")
        if external:
            where = f" ('{_clip(location)}')" if location else ""
            raise InvalidInput(
                f"the ONNX model's tensor '{_clip(name)}' keeps its data in an external file{where}; "
                "only self-contained models, with every weight inside the .onnx file, are accepted",
                code="external_data_refused", tensor=_clip(name), location=_clip(location),
            )

    def _opset(self, length: int) -> None:
        if len(self.opsets) >= MAX_OPSETS:
            raise _too_large(f"the ONNX model imports more than {MAX_OPSETS} opsets")
        try:
            opset = onnx.OperatorSetIdProto.FromString(_read_small(self.fh, length, "opset_import entry"))
        except DecodeError as exc:
            raise _malformed("the ONNX model has an opset_import entry that is not valid protobuf") from exc
        if len(opset.domain) > MAX_NAME_CHARS:
            raise _too_large(f"the ONNX model imports an opset whose domain is {len(opset.domain)} characters; "
                             f"at most {MAX_NAME_CHARS} are accepted")
        if "\x00" in opset.domain:  # as for tensor names: PostgreSQL's JSON columns cannot hold NUL
            raise _malformed("the ONNX model imports an opset whose domain contains a NUL character")
        self.opsets[opset.domain or "ai.onnx"] = opset.version

    def _value_info(self, length: int, is_input: bool) -> None:
        what = "graph input" if is_input else "graph output"
        self.signature_bytes += length
        if self.signature_bytes > MAX_SIGNATURE_BYTES:
            raise _too_large(f"the ONNX graph's inputs and outputs take more than {MAX_SIGNATURE_BYTES} bytes")
        data = _read_small(self.fh, length, what)
        try:
            # protobuf refuses nesting past its own recursion limit (100) with a DecodeError;
            # RecursionError covers the pure-Python protobuf implementation.
            proto = onnx.ValueInfoProto.FromString(data)
        except (DecodeError, RecursionError) as exc:
            raise _malformed(f"the ONNX model has a {what} that is not valid protobuf "
                             "or whose type is nested too deeply") from exc
        (self.inputs if is_input else self.outputs).append((_value_info(proto, what), length))

    def initializer_names(self, wanted: set[str]) -> set[str]:
        """Which of `wanted` are also initializers of the main graph (second, seek-only pass).

        Only names that could match are kept, so memory stays bounded however
        many initializers the graph has.
        """
        found = set()
        longest = max((len(name.encode()) for name in wanted), default=0)
        for start, end in self.main_graphs:
            self.fh.seek(start)
            for number, wire, value in _fields(self.fh, end):
                if number == _GRAPH_INITIALIZER and wire == _LEN:
                    name = _field_bytes(self.fh, self.fh.tell() + value, _TENSOR_NAME, longest)
                    if name is not None and name.decode("utf-8", "replace") in wanted:
                        found.add(name.decode("utf-8", "replace"))
        return found


def _value_info(proto: onnx.ValueInfoProto, what: str) -> dict:
    if len(proto.name) > MAX_NAME_CHARS:
        raise _too_large(f"a {what}'s name is {len(proto.name)} characters; at most {MAX_NAME_CHARS} are accepted")
    tensor = proto.type.tensor_type
    if len(tensor.shape.dim) > MAX_RANK:
        raise _too_large(f"{what} '{proto.name}' has {len(tensor.shape.dim)} dimensions; "
                         f"at most {MAX_RANK} are accepted")
    dims = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        else:
            if len(dim.dim_param) > MAX_NAME_CHARS:
                raise _too_large(f"{what} '{proto.name}' has a symbolic dimension longer than "
                                 f"{MAX_NAME_CHARS} characters")
            dims.append(dim.dim_param or None)
    if "\x00" in proto.name or any(isinstance(d, str) and "\x00" in d for d in dims):
        # PostgreSQL's JSON columns cannot hold NUL; no real model names a tensor with one.
        raise _malformed(f"a {what}'s name or dimension contains a NUL character")
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else None
    except (KeyError, ValueError):
        raise _malformed(f"{what} '{proto.name}' has an unknown element type {tensor.elem_type}") from None
    return {"name": proto.name, "dtype": dtype, "shape": dims}


def _field_bytes(fh: BinaryIO, end: int, wanted: int, limit: int) -> bytes | None:
    """The first length-delimited field `wanted` of the message ending at `end`, if at most `limit` bytes."""
    for number, wire, value in _fields(fh, end):
        if number == wanted and wire == _LEN:
            return fh.read(value) if value <= limit else None
    return None


def _entry_value(fh: BinaryIO, end: int, key: bytes) -> str:
    """A StringStringEntryProto's value when its key is `key` (both read only if small)."""
    entry_key = entry_value = None
    for number, wire, value in _fields(fh, end):
        if wire == _LEN and value <= MAX_SMALL_FIELD:
            if number == _ENTRY_KEY:
                entry_key = fh.read(value)
            elif number == _ENTRY_VALUE:
                entry_value = fh.read(value)
    return entry_value.decode("utf-8", "replace") if entry_key == key and entry_value is not None else ""


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def read_onnx_signature(fh: BinaryIO, size: int) -> dict:
    """{'inputs': [...], 'outputs': [...], 'ir_version': n, 'opsets': {domain: version}}, in constant memory.

    Raises InvalidInput: "malformed_onnx" (not an ONNX model, or nested too
    deeply), "onnx_field_too_large" (a field past the limits above) or
    "external_data_refused" (a tensor's data lives in another file).
    """
    walk = _Walk(fh, collect_signature=True)
    walk.model(size)
    if not walk.main_graphs or not walk.outputs:
        raise _malformed("the file is not an ONNX model: it has no graph outputs")
    # Old exporters list initializers among the inputs; they are not what callers feed.
    initializers = walk.initializer_names({entry["name"] for entry, _ in walk.inputs})
    inputs = [(entry, size) for entry, size in walk.inputs if entry["name"] not in initializers]
    for kept, what in ((inputs, "inputs"), (walk.outputs, "outputs")):
        if len(kept) > MAX_SIGNATURE_ENTRIES:
            raise _too_large(f"the ONNX graph declares {len(kept)} {what}; at most {MAX_SIGNATURE_ENTRIES} "
                             "are accepted")
    recorded = sum(size for _, size in inputs) + sum(size for _, size in walk.outputs)
    if recorded > MAX_RECORDED_SIGNATURE_BYTES:
        raise _too_large(f"the ONNX graph's inputs and outputs take {recorded} bytes; at most "
                         f"{MAX_RECORDED_SIGNATURE_BYTES} bytes are recorded per version")
    return {"inputs": [entry for entry, _ in inputs], "outputs": [entry for entry, _ in walk.outputs],
            "ir_version": walk.ir_version, "opsets": walk.opsets}


def refuse_external_data(model: bytes | bytearray | memoryview | BinaryIO) -> None:
    """Raise InvalidInput("external_data_refused") if any tensor in the model names external data.

    For callers that already hold a model's bytes (the gate workers, before
    onnxruntime sees them); the walk seeks over weights, so it costs
    milliseconds whatever the size. Also raises "malformed_onnx" for bytes
    that are not a protobuf message or nest too deeply.
    """
    fh = io.BytesIO(model) if isinstance(model, (bytes, bytearray, memoryview)) else model
    start = fh.tell()
    size = fh.seek(0, io.SEEK_END)
    try:
        _Walk(fh, collect_signature=False).model(size)
    finally:
        fh.seek(start)
