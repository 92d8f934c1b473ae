"""The gates on a GPU: onnxruntime's CUDA provider runs validation and the golden set, and agrees with the CPU.

These run where onnxruntime has its CUDA provider (onnxruntime-gpu) and a GPU answers: a GPU gate worker's
image, or a lent GPU machine. Everywhere else, which is every CI machine of this project, they are skipped
with that reason. They use no fixture and no Django, so `pytest --noconftest` runs them on a machine that has
only the gates' own dependencies (numpy, onnx, onnxruntime-gpu, torch, scikit-learn).
"""

import functools

import numpy as np
import onnxruntime as ort
import pytest

from devtools.reference_models import build_reference_model, golden_set_npz_bytes
from workers.gates import evaluate_golden_set, parse_golden_set, resolve_gate_policy, run_validation
from workers.gates.loading import CPU_PROVIDER, CUDA_PROVIDER, open_session, predict_logits, session_options

pytestmark = pytest.mark.skipif(CUDA_PROVIDER not in ort.get_available_providers(),
                                reason="needs onnxruntime's CUDA provider (onnxruntime-gpu) and a GPU")

SIGNATURE = {
    "inputs": [{"name": "input", "dtype": "float32", "shape": [None, 1, 8, 8]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": [None, 10]}],
}


@functools.cache
def _model(broken_class=None):
    return build_reference_model("resnet", broken_class=broken_class)


@functools.cache
def _golden():
    return parse_golden_set(golden_set_npz_bytes())


def test_validation_runs_on_cuda_and_measures_the_gpu_memory_it_took():
    outcome = run_validation(_model().onnx_bytes, declared_signature=SIGNATURE, policy=resolve_gate_policy(None))
    # The provider onnxruntime actually chose: a CUDA library missing at run time falls back to the CPU.
    assert outcome.device == CUDA_PROVIDER, outcome.summary
    assert outcome.verdict == "pass", outcome.summary
    assert CUDA_PROVIDER in outcome.summary
    assert outcome.evidence["memory"]["cuda_used_delta_bytes"] is not None
    for stats in outcome.evidence["latency_ms"].values():
        assert 0 < stats["p50_ms"] <= stats["p95_ms"]


def test_cuda_and_cpu_give_the_same_predictions_on_the_golden_set():
    golden = _golden()
    on_gpu = open_session(_model().onnx_bytes)
    assert on_gpu.device == CUDA_PROVIDER
    on_cpu = ort.InferenceSession(_model().onnx_bytes, sess_options=session_options(), providers=[CPU_PROVIDER])
    gpu_logits = predict_logits(on_gpu, golden.inputs, batch_size=64)
    cpu_logits = np.concatenate([on_cpu.run(None, {on_gpu.input_name: golden.inputs[i:i + 64]})[0]
                                 for i in range(0, len(golden), 64)])
    # TF32 convolutions on the GPU round differently from the CPU's fp32: close, not identical.
    np.testing.assert_allclose(gpu_logits, cpu_logits, rtol=1e-2, atol=1e-2)
    assert np.array_equal(gpu_logits.argmax(axis=1), cpu_logits.argmax(axis=1))


def test_golden_set_gate_on_cuda_fails_a_regressed_candidate_as_on_the_cpu():
    policy = resolve_gate_policy(None)
    outcome = evaluate_golden_set(_model(broken_class=3).onnx_bytes, _golden(),
                                  production_bytes=_model().onnx_bytes, policy=policy)
    assert outcome.device == CUDA_PROVIDER
    assert outcome.verdict == "fail", outcome.summary
    assert [c["index"] for c in outcome.evidence["production"]["regressed_classes"]] == [3]

    healthy = evaluate_golden_set(_model().onnx_bytes, _golden(), production_bytes=_model().onnx_bytes,
                                  policy=policy)
    assert (healthy.device, healthy.verdict) == (CUDA_PROVIDER, "pass")
