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
