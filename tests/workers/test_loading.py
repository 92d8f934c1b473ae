"""Golden sets and models are loaded from bytes, and bad ones are refused with reasons."""

import io

import numpy as np
import onnxruntime as ort
import pytest

from controlplane.errors import InvalidInput
from workers.gates import open_session, parse_golden_set


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _valid_arrays(count=4):
    return {
        "inputs": np.zeros((count, 1, 8, 8), dtype=np.float32),
        "labels": np.arange(count, dtype=np.int64) % 2,
        "class_names": np.array(["cat", "dog"]),
    }


def test_golden_set_parses_with_its_class_names():
    golden = parse_golden_set(_npz(**_valid_arrays()))
    assert golden.class_names == ("cat", "dog")
    assert len(golden) == 4


def test_golden_set_with_pickled_object_array_is_refused():
    arrays = _valid_arrays()
    arrays["class_names"] = np.array([{"name": "cat"}, {"name": "dog"}], dtype=object)
    with pytest.raises(InvalidInput, match="pickled Python objects") as refused:
        parse_golden_set(_npz(**arrays))
    assert refused.value.code == "invalid_golden_set"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"inputs": np.zeros((4, 1, 8, 8), dtype=np.float64)}, "must be float32"),
        ({"labels": np.zeros(3, dtype=np.int64)}, "4 inputs but 3 labels"),
        ({"labels": np.array([0, 1, 2, 1])}, r"labels must lie in \[0, 2\)"),
        ({"labels": np.zeros(4, dtype=np.float32)}, "integer array"),
        ({"inputs": np.full((4, 1, 8, 8), np.nan, dtype=np.float32)}, "NaN"),
    ],
)
def test_inconsistent_golden_set_is_refused(change, message):
    with pytest.raises(InvalidInput, match=message):
        parse_golden_set(_npz(**{**_valid_arrays(), **change}))


def test_golden_set_without_labels_is_refused():
    arrays = _valid_arrays()
    del arrays["labels"]
    with pytest.raises(InvalidInput, match="no 'labels' array"):
        parse_golden_set(_npz(**arrays))


def test_bytes_that_are_not_an_npz_are_refused():
    with pytest.raises(InvalidInput, match="not a readable .npz"):
        parse_golden_set(b"PK\x03\x04 not really a zip")


def test_session_reports_the_provider_that_actually_runs(good_model):
    model = open_session(good_model.onnx_bytes)
    assert model.device == model.session.get_providers()[0]
    assert model.device in ort.get_available_providers()


def test_unloadable_model_bytes_raise_invalid_input():
    with pytest.raises(InvalidInput) as refused:
        open_session(b"\x08\x07garbage")
    assert refused.value.code == "model_not_loadable"
