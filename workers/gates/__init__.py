"""The gates a model version must pass before it ships: validation, quantization, golden set.

Pure domain code over bytes and numbers; the Celery tasks that verify
signatures, load artifacts and store outcomes call into these modules.
"""

from workers.gates.golden import evaluate_golden_set, mcnemar_exact
from workers.gates.loading import GoldenSet, open_session, parse_golden_set
from workers.gates.outcome import GateOutcome
from workers.gates.policy import DEFAULT_GATE_POLICY, resolve_gate_policy
from workers.gates.quantization import QuantizationResult, quantize_int8
from workers.gates.validation import convert_pt2_to_onnx, run_validation

__all__ = [
    "DEFAULT_GATE_POLICY",
    "GateOutcome",
    "GoldenSet",
    "QuantizationResult",
    "convert_pt2_to_onnx",
    "evaluate_golden_set",
    "mcnemar_exact",
    "open_session",
    "parse_golden_set",
    "quantize_int8",
    "resolve_gate_policy",
    "run_validation",
]
