"""The validation gate: well-formed, as declared, within the latency budget."""

import copy
import json

import onnx
from onnx import TensorProto, helper

from workers.gates import resolve_gate_policy, run_validation

SIGNATURE = {
    "inputs": [{"name": "input", "dtype": "float32", "shape": [None, 1, 8, 8]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": [None, 10]}],
}


def test_good_model_passes_validation(good_model, policy):
    outcome = run_validation(good_model.onnx_bytes, declared_signature=SIGNATURE, policy=policy)
    assert outcome.verdict == "pass", outcome.summary
    assert outcome.evidence["signature_mismatches"] == []
    assert outcome.device in outcome.summary


def test_validation_measures_latency_per_batch_size_and_memory(good_model, policy):
    outcome = run_validation(good_model.onnx_bytes, declared_signature=None, policy=policy)
    assert set(outcome.evidence["latency_ms"]) == {"1", "8"}
    for stats in outcome.evidence["latency_ms"].values():
        assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    assert outcome.evidence["memory"]["rss_peak_delta_bytes"] >= 0
    assert outcome.timings["load_s"] > 0
    json.dumps(outcome.to_dict())


def test_declared_signature_mismatch_fails_validation(good_model, policy):
    declared = copy.deepcopy(SIGNATURE)
    declared["outputs"][0]["shape"] = [None, 12]
    outcome = run_validation(good_model.onnx_bytes, declared_signature=declared, policy=policy)
    assert outcome.verdict == "fail"
    assert "output 'logits' dimension 1 is 10, declared 12" in outcome.summary


def test_declared_dynamic_batch_on_a_fixed_batch_graph_is_a_mismatch(good_model, policy):
    fixed = _fixed_batch_copy(good_model.onnx_bytes)
    outcome = run_validation(
        fixed, declared_signature=SIGNATURE, policy=resolve_gate_policy({"validation": {"batch_sizes": [1]}})
    )
    assert outcome.verdict == "fail"
    assert "input 'input' dimension 0 is 1, declared dynamic" in outcome.summary


def test_declared_input_name_mismatch_fails_validation(good_model, policy):
    declared = copy.deepcopy(SIGNATURE)
    declared["inputs"][0]["name"] = "pixels"
    outcome = run_validation(good_model.onnx_bytes, declared_signature=declared, policy=policy)
    assert outcome.verdict == "fail"
    assert "pixels" in outcome.summary


def test_latency_budget_exceeded_fails(good_model, policy):
    policy["validation"]["latency_budget_p95_ms"] = 0.0
    outcome = run_validation(good_model.onnx_bytes, declared_signature=SIGNATURE, policy=policy)
    assert outcome.verdict == "fail"
    assert "over the 0 ms budget" in outcome.summary


def test_malformed_onnx_is_error_with_clear_summary(policy):
    outcome = run_validation(b"\x00\x01 this is not protobuf \xff", declared_signature=None, policy=policy)
    assert outcome.verdict == "error"
    assert outcome.summary.startswith("The artifact is not an ONNX model")
    assert outcome.evidence["code"] == "malformed_onnx"


def test_empty_bytes_are_an_error_not_an_empty_model(policy):
    outcome = run_validation(b"", declared_signature=None, policy=policy)
    assert outcome.verdict == "error"
    assert "empty graph" in outcome.summary


def test_model_rejected_by_the_onnx_checker_is_an_error(policy):
    # The node reads a tensor nothing produces.
    graph = helper.make_graph(
        [helper.make_node("Relu", ["missing"], ["y"])],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    outcome = run_validation(model.SerializeToString(), declared_signature=None, policy=policy)
    assert outcome.verdict == "error"
    assert outcome.summary.startswith("The ONNX checker rejected the model")


def _fixed_batch_copy(onnx_bytes: bytes) -> bytes:
    model = onnx.load_model_from_string(onnx_bytes)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    # Intermediate shapes were inferred for a symbolic batch; let the checker infer them again.
    del model.graph.value_info[:]
    return model.SerializeToString()
