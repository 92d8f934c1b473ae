"""Reference models and golden set for the gate tests, built once per session.

Trained models are cached on disk (see devtools.reference_models), so only the
first run on a machine pays for training.
"""

import pytest

from devtools import reference_models
from workers.gates import parse_golden_set, resolve_gate_policy

BROKEN_CLASS = 3


@pytest.fixture(scope="session")
def golden_npz():
    return reference_models.golden_set_npz_bytes()


@pytest.fixture(scope="session")
def golden(golden_npz):
    return parse_golden_set(golden_npz)


@pytest.fixture(scope="session")
def reference():
    """Every reference architecture, trained: {arch: ReferenceModel}."""
    return {arch: reference_models.build_reference_model(arch) for arch in reference_models.ARCHITECTURES}


@pytest.fixture(scope="session")
def good_model(reference):
    return reference["resnet"]


@pytest.fixture(scope="session")
def regressed_model():
    """The resnet with one digit class broken; its architecture and other weights unchanged."""
    return reference_models.build_reference_model("resnet", broken_class=BROKEN_CLASS)


@pytest.fixture
def policy():
    """The default policy with iteration counts small enough for a test run."""
    return resolve_gate_policy(
        {
            "validation": {"warmup_iterations": 2, "timed_iterations": 10, "latency_budget_p95_ms": 1000.0},
            "quantization": {"warmup_iterations": 2, "timed_iterations": 10},
        }
    )
