"""The int8 version is smaller, accurate enough, and made without leaving files behind."""

import json
import tempfile

import onnx

from workers.gates import quantize_int8


def test_int8_version_is_smaller_and_within_accuracy_delta(good_model, golden, policy):
    result = quantize_int8(good_model.onnx_bytes, golden, policy)
    assert result.outcome.verdict == "pass", result.outcome.summary
    assert len(result.int8_bytes) < len(good_model.onnx_bytes)
    assert result.outcome.metrics["size_ratio"] == len(result.int8_bytes) / len(good_model.onnx_bytes)
    assert result.outcome.metrics["accuracy_drop"] <= policy["quantization"]["max_accuracy_drop"]
    json.dumps(result.outcome.to_dict())


def test_int8_version_is_a_qdq_model(good_model, golden, policy):
    result = quantize_int8(good_model.onnx_bytes, golden, policy)
    ops = {node.op_type for node in onnx.load_model_from_string(result.int8_bytes).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_evidence_compares_every_class_with_the_parent(good_model, golden, policy):
    evidence = quantize_int8(good_model.onnx_bytes, golden, policy).outcome.evidence
    assert [row["name"] for row in evidence["per_class"]] == list(golden.class_names)
    assert evidence["latency_ms"]["fp32"]["p50_ms"] > 0 and evidence["latency_ms"]["int8"]["p50_ms"] > 0


def test_quantization_leaves_no_temporary_files(good_model, golden, policy, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    quantize_int8(good_model.onnx_bytes, golden, policy)
    assert list(tmp_path.iterdir()) == []


def test_unloadable_model_is_an_error_without_int8_bytes(golden, policy):
    result = quantize_int8(b"not onnx", golden, policy)
    assert result.int8_bytes is None
    assert result.outcome.verdict == "error"
