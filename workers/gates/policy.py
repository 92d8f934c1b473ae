"""Gate policy: which gates run, in what order, and the thresholds each one applies.

A model carries overrides of `DEFAULT_GATE_POLICY`; `resolve_gate_policy` merges
them and refuses anything it does not know, so a typo never loosens a gate.
"""

from __future__ import annotations

import copy
from typing import Any

from controlplane.errors import InvalidInput
from controlplane.untrusted_json import is_number

GATE_NAMES = ("validation", "quantization", "golden_set")

# Thresholds chosen for ResNet/MobileNet/EfficientNet-class image classifiers:
# ResNet-50 runs batch-1 in ~20-40 ms on a server CPU core set and a few ms on
# a GPU, and int8 post-training quantization of these families typically costs
# well under one point of top-1 (MobileNet/EfficientNet, with depthwise convs,
# are the most sensitive; hence per-class limits as well as the overall one).
DEFAULT_GATE_POLICY: dict[str, Any] = {
    "gates": ["validation", "quantization", "golden_set"],
    "validation": {
        "latency_budget_p95_ms": 50.0,  # at the smallest batch size measured
        "batch_sizes": [1, 8],
        "warmup_iterations": 10,
        "timed_iterations": 100,
    },
    "quantization": {
        "max_accuracy_drop": 0.01,  # absolute, 0.01 = one point
        "max_class_recall_drop": 0.05,
        "latency_batch_size": 8,
        "warmup_iterations": 5,
        "timed_iterations": 50,
    },
    "golden_set": {
        "mcnemar_alpha": 0.05,
        "max_class_recall_drop": 0.10,  # vs production, for every class
        "class_recall_drop_overrides": {},  # class name -> its own limit (rare classes)
        "min_accuracy": 0.90,  # absolute floors, applied with or without production
        "min_class_recall": 0.70,
        "batch_size": 64,
        "calibration_bins": 10,
    },
    "conversion": {
        "parity_atol": 1e-4,  # max abs logit difference, torch.export program vs ONNX
    },
}

_FRACTIONS = {
    ("quantization", "max_accuracy_drop"),
    ("quantization", "max_class_recall_drop"),
    ("golden_set", "mcnemar_alpha"),
    ("golden_set", "max_class_recall_drop"),
    ("golden_set", "min_accuracy"),
    ("golden_set", "min_class_recall"),
}

# Server-side ceilings on what an uploader's policy may ask a worker to spend:
# the policy travels with the model, so without them one model could hold the
# only worker for its whole time limit on every delivery.
CEILINGS = {
    ("validation", "batch_sizes"): 512,
    ("validation", "warmup_iterations"): 1000,
    ("validation", "timed_iterations"): 10_000,
    ("quantization", "latency_batch_size"): 512,
    ("quantization", "warmup_iterations"): 1000,
    ("quantization", "timed_iterations"): 5000,
    ("golden_set", "batch_size"): 4096,
    ("golden_set", "calibration_bins"): 1000,
}
MAX_BATCH_SIZES = 8


def resolve_gate_policy(overrides: dict | None) -> dict:
    """The default policy deep-merged with `overrides`, checked key by key.

    Raises InvalidInput (code "invalid_gate_policy") on an unknown gate, an
    unknown key, a value of the wrong type, or a fraction outside [0, 1].
    """
    policy = copy.deepcopy(DEFAULT_GATE_POLICY)
    if overrides is None:
        return policy
    if not isinstance(overrides, dict):
        raise _invalid("a gate policy must be a mapping", path="")
    for section, value in overrides.items():
        if section == "gates":
            policy["gates"] = _checked_gate_list(value)
        elif section in policy:
            policy[section] = _merged_section(section, policy[section], value)
        else:
            raise _invalid(f"unknown gate policy section {section!r}", path=section)
    return policy


def _checked_gate_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise _invalid("'gates' must be a list of gate names", path="gates")
    unknown = [name for name in value if name not in GATE_NAMES]
    if unknown:
        raise _invalid(f"unknown gate {unknown[0]!r}; known gates are {', '.join(GATE_NAMES)}", path="gates")
    if len(set(value)) != len(value):
        raise _invalid("a gate may appear only once in 'gates'", path="gates")
    return list(value)


def _merged_section(section: str, defaults: dict, value: Any) -> dict:
    if not isinstance(value, dict):
        raise _invalid(f"policy section {section!r} must be a mapping", path=section)
    merged = dict(defaults)
    for key, setting in value.items():
        path = f"{section}.{key}"
        if key not in defaults:
            raise _invalid(f"unknown setting {path!r}", path=path)
        merged[key] = _checked_setting(path, defaults[key], setting)
        if (section, key) in _FRACTIONS and not 0.0 <= merged[key] <= 1.0:
            raise _invalid(f"{path!r} must be between 0 and 1, got {setting!r}", path=path)
        _check_ceiling(section, key, merged[key])
    return merged


def _checked_setting(path: str, default: Any, value: Any) -> Any:
    if isinstance(default, list):
        if not isinstance(value, list) or not value or not all(_is_positive_int(v) for v in value):
            raise _invalid(f"{path!r} must be a non-empty list of positive integers", path=path)
        return list(value)
    if isinstance(default, dict):
        if not isinstance(value, dict) or not all(is_number(v) and 0 <= v <= 1 for v in value.values()):
            raise _invalid(f"{path!r} must map class names to fractions between 0 and 1", path=path)
        return {str(k): float(v) for k, v in value.items()}
    if isinstance(default, int):
        if not _is_positive_int(value):
            raise _invalid(f"{path!r} must be a positive integer, got {value!r}", path=path)
        return value
    if not is_number(value) or value < 0:
        raise _invalid(f"{path!r} must be a non-negative number, got {value!r}", path=path)
    return float(value)


def _check_ceiling(section: str, key: str, value: Any) -> None:
    ceiling = CEILINGS.get((section, key))
    if ceiling is None:
        return
    path = f"{section}.{key}"
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) > MAX_BATCH_SIZES:
        raise _invalid(f"{path!r} may list at most {MAX_BATCH_SIZES} values", path=path)
    if max(values) > ceiling:
        raise _invalid(f"{path!r} may be at most {ceiling} on this server, got {max(values)}", path=path)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _invalid(detail: str, *, path: str) -> InvalidInput:
    return InvalidInput(detail, code="invalid_gate_policy", path=path)
