"""Gate policies merge over the defaults and refuse anything unknown."""

import pytest

from controlplane.errors import InvalidInput
from workers.gates import DEFAULT_GATE_POLICY, resolve_gate_policy


def test_no_overrides_gives_the_default_policy_in_gate_order():
    policy = resolve_gate_policy(None)
    assert policy == DEFAULT_GATE_POLICY
    assert policy["gates"] == ["validation", "quantization", "golden_set"]


def test_override_changes_one_setting_and_keeps_its_siblings():
    policy = resolve_gate_policy({"golden_set": {"mcnemar_alpha": 0.01}})
    assert policy["golden_set"]["mcnemar_alpha"] == 0.01
    assert policy["golden_set"]["max_class_recall_drop"] == DEFAULT_GATE_POLICY["golden_set"]["max_class_recall_drop"]
    assert policy["validation"] == DEFAULT_GATE_POLICY["validation"]


def test_resolving_never_mutates_the_defaults():
    resolve_gate_policy({"validation": {"batch_sizes": [4]}})
    assert DEFAULT_GATE_POLICY["validation"]["batch_sizes"] == [1, 8]


def test_gate_list_can_drop_a_gate():
    assert resolve_gate_policy({"gates": ["validation", "golden_set"]})["gates"] == ["validation", "golden_set"]


@pytest.mark.parametrize(
    "overrides, path",
    [
        ({"gates": ["validation", "fairness"]}, "gates"),
        ({"fairness": {}}, "fairness"),
        ({"golden_set": {"mcnemar_alfa": 0.05}}, "golden_set.mcnemar_alfa"),
        ({"golden_set": {"mcnemar_alpha": "0.05"}}, "golden_set.mcnemar_alpha"),
        ({"golden_set": {"min_accuracy": 1.5}}, "golden_set.min_accuracy"),
        ({"validation": {"timed_iterations": 0}}, "validation.timed_iterations"),
        ({"validation": {"batch_sizes": [1, True]}}, "validation.batch_sizes"),
    ],
)
def test_unknown_or_ill_typed_settings_are_refused(overrides, path):
    with pytest.raises(InvalidInput) as refused:
        resolve_gate_policy(overrides)
    assert refused.value.code == "invalid_gate_policy"
    assert refused.value.context["path"] == path


@pytest.mark.parametrize("overrides, path", [
    ({"validation": {"timed_iterations": 10_001}}, "validation.timed_iterations"),
    ({"validation": {"batch_sizes": [1, 100_000]}}, "validation.batch_sizes"),
    ({"validation": {"batch_sizes": list(range(1, 10))}}, "validation.batch_sizes"),
    ({"quantization": {"latency_batch_size": 513}}, "quantization.latency_batch_size"),
    ({"golden_set": {"batch_size": 1_000_000}}, "golden_set.batch_size"),
])
def test_benchmark_parameters_above_the_server_ceiling_are_refused(overrides, path):
    with pytest.raises(InvalidInput) as raised:
        resolve_gate_policy(overrides)
    assert raised.value.code == "invalid_gate_policy" and raised.value.context["path"] == path


def test_benchmark_parameters_at_the_ceiling_are_accepted():
    policy = resolve_gate_policy({"validation": {"timed_iterations": 10_000, "batch_sizes": [512]}})
    assert policy["validation"]["timed_iterations"] == 10_000
