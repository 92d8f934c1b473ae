"""Read an ONNX model's declared inputs, outputs and opsets from its file.

The graph's `input`/`output` entries are parsed with onnx's own protobuf
classes, but the walk over the file skips initializers by seeking, so a
multi-gigabyte model is read in constant memory and in milliseconds.
"""

from typing import BinaryIO

import onnx

from controlplane.errors import InvalidInput

# Field numbers from onnx.proto (ModelProto, GraphProto).
_MODEL_IR_VERSION, _MODEL_OPSET_IMPORT, _MODEL_GRAPH = 1, 8, 7
_GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_INITIALIZER = 11, 12, 5
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_SMALL_FIELD = 64 * 1024 * 1024


def _read_varint(fh: BinaryIO) -> int | None:
    shift = result = 0
    while True:
        byte = fh.read(1)
        if not byte:
            if shift == 0:
                return None
            raise InvalidInput("the ONNX file ends in the middle of a field", code="malformed_onnx")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise InvalidInput("the ONNX file has a malformed varint", code="malformed_onnx")


def _fields(fh: BinaryIO, end: int):
    """Yield (field number, wire type, length or value) up to offset `end`."""
    while fh.tell() < end:
        key = _read_varint(fh)
        if key is None:
            return
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            yield number, wire, _read_varint(fh)
        elif wire == _I64:
            fh.seek(8, 1)
            yield number, wire, None
        elif wire == _I32:
            fh.seek(4, 1)
            yield number, wire, None
        elif wire == _LEN:
            length = _read_varint(fh)
            if length is None or fh.tell() + length > end:
                raise InvalidInput(
                    "the ONNX file is truncated or is not an ONNX model", code="malformed_onnx"
                )
            yield number, wire, length
        else:
            raise InvalidInput("the file is not an ONNX model (unknown wire type)", code="malformed_onnx")


def _value_info(proto: onnx.ValueInfoProto) -> dict:
    tensor = proto.type.tensor_type
    dims = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        else:
            dims.append(dim.dim_param or None)
    return {
        "name": proto.name,
        "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        if tensor.elem_type
        else None,
        "shape": dims,
    }


def read_onnx_signature(fh: BinaryIO, size: int) -> dict:
    """{'inputs': [...], 'outputs': [...], 'ir_version': n, 'opsets': {domain: version}}."""
    inputs, outputs, initializer_names = [], [], set()
    ir_version, opsets, saw_graph = None, {}, False
    fh.seek(0)
    for number, wire, value in _fields(fh, size):
        if number == _MODEL_IR_VERSION and wire == _VARINT:
            ir_version = value
        elif number == _MODEL_OPSET_IMPORT and wire == _LEN:
            opset = onnx.OperatorSetIdProto.FromString(fh.read(value))
            opsets[opset.domain or "ai.onnx"] = opset.version
        elif number == _MODEL_GRAPH and wire == _LEN:
            saw_graph = True
            graph_end = fh.tell() + value
            for g_number, g_wire, g_value in _fields(fh, graph_end):
                if g_wire != _LEN:
                    continue
                if g_number in (_GRAPH_INPUT, _GRAPH_OUTPUT) and g_value <= _MAX_SMALL_FIELD:
                    info = _value_info(onnx.ValueInfoProto.FromString(fh.read(g_value)))
                    (inputs if g_number == _GRAPH_INPUT else outputs).append(info)
                elif g_number == _GRAPH_INITIALIZER:
                    initializer_names.add(_tensor_name(fh, g_value))
                else:
                    fh.seek(g_value, 1)
        elif wire == _LEN:
            fh.seek(value, 1)
    if not saw_graph or not outputs:
        raise InvalidInput("the file is not an ONNX model: it has no graph outputs", code="malformed_onnx")
    # Old exporters list initializers among the inputs; they are not what callers feed.
    inputs = [i for i in inputs if i["name"] not in initializer_names]
    return {"inputs": inputs, "outputs": outputs, "ir_version": ir_version, "opsets": opsets}


def _tensor_name(fh: BinaryIO, length: int) -> str:
    """A TensorProto's name (field 8) without reading its data."""
    end = fh.tell() + length
    name = ""
    for number, wire, value in _fields(fh, end):
        if number == 8 and wire == _LEN:
            name = fh.read(value).decode("utf-8", "replace")
        elif wire == _LEN:
            fh.seek(value, 1)
    fh.seek(end)
    return name
