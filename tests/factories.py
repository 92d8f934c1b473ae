"""Small builders for test data: users with roles, tiny ONNX graphs, uploads."""

import io

import numpy as np
import onnx
from django.core.files.uploadedfile import SimpleUploadedFile
from onnx import TensorProto, helper, numpy_helper
from rest_framework.test import APIClient

from controlplane.accounts import issue_token
from controlplane.roles import Role


def tiny_onnx(seed: int = 0, inputs: int = 4, classes: int = 3) -> bytes:
    """A valid one-layer ONNX classifier; `seed` changes its weights (and so its digest)."""
    weights = np.random.default_rng(seed).standard_normal((inputs, classes)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", inputs])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def client_for(role: Role, username: str | None = None) -> APIClient:
    token = issue_token(username or f"{role.value}-user", role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    client.username = username or f"{role.value}-user"
    return client


# Where the rollout tests' models run, unless a test says otherwise.
TARGET = {"namespace": "ml", "deployment": "resnet-server", "replicas": 4}


def set_target(model, traffic: dict | None = None):
    """Point `model`'s rollouts at `traffic` (default TARGET), as an admin does once per model."""
    from rollouts.services import set_rollout_target

    set_rollout_target(model, traffic or TARGET, actor="test-admin", reason="test setup")
    model.refresh_from_db()
    return model


def client_with_roles(username: str, *roles: Role) -> APIClient:
    """One person holding several roles (the insider four-eyes approval is about)."""
    token = None
    for role in roles:
        token = issue_token(username, role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    client.username = username
    return client


def upload(client: APIClient, model: str, data: bytes, name: str = "model.onnx", **fields):
    payload = {"artifact": SimpleUploadedFile(name, data, "application/octet-stream")}
    for key, value in fields.items():
        payload[key] = value if not isinstance(value, bytes) else SimpleUploadedFile(f"{key}.bin", value)
    return client.post(f"/api/v1/models/{model}/versions/", payload, format="multipart")


def golden_npz(n: int = 20, inputs: int = 4, classes: int = 3) -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    np.savez(buffer, inputs=rng.standard_normal((n, inputs)).astype(np.float32),
             labels=rng.integers(0, classes, n).astype(np.int64),
             class_names=np.array([f"class-{i}" for i in range(classes)]))
    return buffer.getvalue()


def onnx_is_valid(data: bytes) -> bool:
    onnx.checker.check_model(onnx.load_from_string(data))
    return True


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def write_large_onnx(path, payload_bytes: int, chunk: int = 8 * 1024 * 1024) -> None:
    """A valid ONNX model (output = input + big constant's first element) of about `payload_bytes`.

    The initializer's raw bytes are written in chunks straight into the
    protobuf framing, so building a 1 GiB model needs no 1 GiB buffer.
    """
    n = payload_bytes // 4
    graph = helper.make_graph(
        [helper.make_node("Gather", ["big", "index"], ["picked"]),
         helper.make_node("Add", ["input", "picked"], ["logits"])], "large",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(np.array([0], dtype=np.int64), "index")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    graph_bytes = model.graph.SerializeToString()
    model.ClearField("graph")
    # TensorProto: dims=1 (varint, packed), data_type=2, name=8, raw_data=9.
    header = (b"\x0a" + _varint(len(_varint(n))) + _varint(n) + b"\x10\x01"
              + b"\x42\x03big" + b"\x4a" + _varint(n * 4))
    tensor_len = len(header) + n * 4
    initializer = b"\x2a" + _varint(tensor_len)  # GraphProto.initializer = 5
    with open(path, "wb") as fh:
        fh.write(model.SerializeToString())
        fh.write(b"\x3a" + _varint(len(graph_bytes) + len(initializer) + tensor_len))  # ModelProto.graph = 7
        fh.write(graph_bytes)
        fh.write(initializer)
        fh.write(header)
        block = np.full(chunk // 4, 0.5, dtype=np.float32).tobytes()
        remaining = n * 4
        while remaining:
            piece = block[: min(len(block), remaining)]
            fh.write(piece)
            remaining -= len(piece)


# ------------------------------------------------------------- hostile uploads

def len_field(number: int, payload: bytes) -> bytes:
    """A protobuf length-delimited field, framed by hand (for files onnx.helper will not build)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def external_tensor(name: str, location: str, *, with_location_flag: bool = True) -> TensorProto:
    """A float tensor whose data lives in another file, as onnx's external-data format writes it."""
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4, 3])
    if with_location_flag:
        tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "48")):
        tensor.external_data.add(key=key, value=value)
    return tensor


def onnx_with_external_weights(location: str) -> bytes:
    """tiny_onnx's classifier with its weight `W` stored as external data at `location`."""
    model = onnx.load_from_string(tiny_onnx())
    model.graph.initializer[0].CopyFrom(external_tensor("W", location))
    return model.SerializeToString()


def onnx_with_extra_graph_fields(*fields: bytes, base: bytes | None = None) -> bytes:
    """A valid model's bytes with raw, hand-framed fields appended to its main graph."""
    model = onnx.load_from_string(base or tiny_onnx())
    graph = model.graph.SerializeToString() + b"".join(fields)
    model.ClearField("graph")
    return model.SerializeToString() + len_field(7, graph)  # ModelProto.graph = 7


def deeply_nested_input(depth: int, name: str = "nested") -> bytes:
    """A GraphProto.input field whose type is a sequence of sequence of ... `depth` levels deep."""
    type_bytes = len_field(1, b"\x08\x01")  # TypeProto.tensor_type { elem_type: FLOAT }
    for _ in range(depth):
        # TypeProto.sequence_type (4) { Sequence.elem_type (1) { ... } }
        type_bytes = len_field(4, len_field(1, type_bytes))
    return len_field(11, len_field(1, name.encode()) + len_field(2, type_bytes))


def write_onnx_with_huge_domain(path, domain_bytes: int, chunk: int = 8 * 1024 * 1024) -> None:
    """tiny_onnx plus an opset_import whose domain is `domain_bytes` long, written in chunks."""
    block = b"a" * chunk
    opset_len = 1 + len(_varint(domain_bytes)) + domain_bytes + 2
    with open(path, "wb") as fh:
        fh.write(tiny_onnx())
        fh.write(b"\x42" + _varint(opset_len))  # ModelProto.opset_import = 8
        fh.write(b"\x0a" + _varint(domain_bytes))  # OperatorSetIdProto.domain = 1
        remaining = domain_bytes
        while remaining:
            piece = block[: min(len(block), remaining)]
            fh.write(piece)
            remaining -= len(piece)
        fh.write(b"\x10\x01")  # OperatorSetIdProto.version = 1


def npz_bytes(compressed: bool = False, **arrays) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def write_lying_npz(path, declared_bytes: int, real_bytes: int, chunk: int = 8 * 1024 * 1024) -> None:
    """A small .npz whose 'inputs' declares `declared_bytes` of float32 (zip directory and .npy header agree)
    but holds `real_bytes` of deflated zeros: what a zip bomb looks like to a reader that trusts sizes."""
    import zipfile

    from numpy.lib import format as npy_format

    rows = declared_bytes // (4 * 128)
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (rows, 128)})
    header = header.getvalue()
    labels = io.BytesIO()
    np.save(labels, np.zeros(rows, dtype=np.int64))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("inputs.npy", "w") as member:
            member.write(header)
            zeros, remaining = bytes(chunk), real_bytes
            while remaining:
                member.write(zeros[: min(chunk, remaining)])
                remaining -= min(chunk, remaining)
        archive.writestr("labels.npy", labels.getvalue())
    declared = len(header) + rows * 4 * 128
    data = bytearray(open(path, "rb").read())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    data[local + 22: local + 26] = declared.to_bytes(4, "little")  # local header: uncompressed size
    data[central + 24: central + 28] = declared.to_bytes(4, "little")  # central directory: uncompressed size
    with open(path, "wb") as fh:
        fh.write(data)
