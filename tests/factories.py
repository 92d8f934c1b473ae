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
