"""GateOutcome.to_dict is a deep copy, equal to dataclasses.asdict, however large the evidence."""

import dataclasses
import json

from workers.gates.outcome import GateOutcome


def _outcome_with_a_thousand_classes() -> GateOutcome:
    confusion = [[(row * 7 + column) % 3 for column in range(1000)] for row in range(1000)]
    evidence = {
        "confusion_matrix": confusion,
        "per_class": [{"index": i, "name": f"class_{i}", "recall": None if i % 2 else 0.5} for i in range(1000)],
        "pair": (1, [2, 3]),
        "class_names": [f"class_{i}" for i in range(1000)],
    }
    return GateOutcome("golden_set", "pass", "ok", metrics={"accuracy": 0.9}, evidence=evidence, device="CPU",
                       timings={"total_s": 1.0})


def test_to_dict_equals_asdict():
    outcome = _outcome_with_a_thousand_classes()
    assert outcome.to_dict() == dataclasses.asdict(outcome)
    json.dumps(outcome.to_dict())


def test_to_dict_shares_nothing_mutable_with_the_outcome():
    outcome = _outcome_with_a_thousand_classes()
    copied = outcome.to_dict()
    copied["evidence"]["confusion_matrix"][0][0] = -1
    copied["evidence"]["per_class"][0]["recall"] = -1
    copied["evidence"]["pair"][1].append(4)
    copied["metrics"]["accuracy"] = -1
    assert outcome.evidence["confusion_matrix"][0][0] == 0
    assert outcome.evidence["per_class"][0]["recall"] == 0.5
    assert outcome.evidence["pair"] == (1, [2, 3])
    assert outcome.metrics["accuracy"] == 0.9
