"""A gate outcome is a verdict, a reason, and JSON-ready evidence."""

import json

import pytest

from workers.gates import GateOutcome


def test_outcome_round_trips_through_json():
    outcome = GateOutcome(
        "golden_set", "fail", "Recall of class 3 fell.", metrics={"accuracy": 0.97}, evidence={"classes": [3]}
    )
    assert json.loads(json.dumps(outcome.to_dict()))["evidence"] == {"classes": [3]}


def test_unknown_verdict_is_refused():
    with pytest.raises(ValueError):
        GateOutcome("validation", "maybe", "Unsure.")


def test_an_answer_from_the_sandbox_keeps_only_finite_numbers():
    outcome = GateOutcome.from_sandbox("validation", {
        "verdict": "pass", "summary": "ok", "metrics": {"p95": 1.5, "nan": float("nan"), "inf": float("inf"),
                                                        "flag": True, "text": "1"}})
    assert outcome.metrics == {"p95": 1.5}


def test_an_answer_from_the_sandbox_with_deeply_nested_evidence_is_an_error():
    evidence = current = {}
    for _ in range(50):
        current["deeper"] = {}
        current = current["deeper"]
    outcome = GateOutcome.from_sandbox("golden_set", {"verdict": "pass", "summary": "ok", "evidence": evidence})
    assert outcome.verdict == "error" and outcome.evidence["code"] == "sandbox_bad_result"


def test_an_answer_from_the_sandbox_without_a_verdict_is_an_error_never_a_pass():
    assert GateOutcome.from_sandbox("validation", {"verdict": "PASS"}).verdict == "error"
    assert GateOutcome.from_sandbox("validation", ["pass"]).verdict == "error"
