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
