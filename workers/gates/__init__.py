"""The gates a model version must pass before it ships: validation, quantization, golden set.

Pure domain code over bytes and numbers; the pipeline verifies signatures and
hands bytes to the sandbox, where these modules run. Names are loaded on first
use, so the web process can check a gate policy (`workers.gates.policy`)
without importing onnxruntime, scipy or torch.
"""

import importlib

_EXPORTS = {
    "DEFAULT_GATE_POLICY": "policy", "resolve_gate_policy": "policy",
    "GateOutcome": "outcome",
    "GoldenSet": "loading", "open_session": "loading", "parse_golden_set": "loading",
    "QuantizationResult": "quantization", "quantize_int8": "quantization",
    "convert_pt2_to_onnx": "validation", "run_validation": "validation",
    "evaluate_golden_set": "golden", "mcnemar_exact": "golden",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'workers.gates' has no attribute {name!r}")
    return getattr(importlib.import_module(f"workers.gates.{_EXPORTS[name]}"), name)
