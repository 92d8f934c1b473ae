"""A torch.export program converts to ONNX only when both compute the same outputs."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from controlplane.errors import InvalidInput
from devtools import reference_models
from workers.gates import convert_pt2_to_onnx


@pytest.fixture(scope="module")
def mobilenet_module():
    return reference_models.load_reference_module("mobilenet")


def test_pt2_program_converts_with_parity(mobilenet_module, golden):
    onnx_bytes, parity = convert_pt2_to_onnx(reference_models.export_pt2_bytes(mobilenet_module))
    assert parity["passed"] and parity["max_abs_diff"] <= parity["tolerance"]

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    converted = session.run(None, {"input": golden.inputs[:5]})[0]
    with torch.no_grad():
        original = mobilenet_module(torch.from_numpy(golden.inputs[:5])).numpy()
    np.testing.assert_allclose(converted, original, atol=1e-4)


def test_parity_beyond_tolerance_refuses_the_conversion(mobilenet_module):
    # A negative tolerance cannot be met: it exercises the refusal path exactly.
    with pytest.raises(InvalidInput) as refused:
        convert_pt2_to_onnx(reference_models.export_pt2_bytes(mobilenet_module), parity_atol=-1.0)
    assert refused.value.code == "conversion_parity_failed"
    assert "max_abs_diff" in refused.value.context


def test_bytes_that_are_not_a_program_are_refused():
    with pytest.raises(InvalidInput) as refused:
        convert_pt2_to_onnx(b"not a zip archive")
    assert refused.value.code == "conversion_failed"
