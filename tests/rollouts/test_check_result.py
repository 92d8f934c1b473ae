"""A check's result as evidence: strict JSON values, whatever numeric types the statistics produced."""

import json
import math
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from rollouts.analysis.result import CheckResult, Verdict, to_json_value


@dataclass(frozen=True)
class Example(CheckResult):
    ratio: float = 0.0
    count: int = 0
    numpy_ratio: float = 0.0
    window: timedelta = timedelta(0)
    edges: tuple = ()
    per_bound: dict | None = None


def test_evidence_is_strict_json_with_every_non_finite_number_as_null():
    result = Example(Verdict.FAIL, "slower", ratio=math.nan, count=np.int64(3), numpy_ratio=np.float64(math.inf),
                     window=timedelta(minutes=2), edges=({"le": 0.25, "bf": -math.inf}, 1.5),
                     per_bound={0.1: np.float32(2.5), math.inf: None})
    evidence = result.evidence()
    assert evidence == {"verdict": "fail", "reason": "slower", "ratio": None, "count": 3, "numpy_ratio": None,
                        "window": 120.0, "edges": [{"le": 0.25, "bf": None}, 1.5],
                        "per_bound": {"0.1": 2.5, "inf": None}}
    assert json.loads(json.dumps(evidence, allow_nan=False)) == evidence
    assert type(evidence["count"]) is int and type(evidence["verdict"]) is str


def test_plain_values_come_back_as_they_are():
    for value in ("text", 7, True, None, 0.5):
        assert to_json_value(value) == value and type(to_json_value(value)) is type(value)
