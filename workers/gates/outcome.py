"""What a gate concludes about a model version, and the evidence behind it.

Every gate returns one `GateOutcome`; the worker stores `to_dict()` as is, and
the web UI shows the summary first and the evidence beside production's.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

from registry.gate_verdicts import OUTCOMES, GateVerdict


@dataclasses.dataclass
class GateOutcome:
    """One gate's verdict on one model version.

    verdict: "pass" (measured and within policy), "fail" (measured and outside
        policy), or "error" (the gate could not measure the model: it does not
        parse, does not pass the ONNX checker, does not load or does not run).
    summary: one sentence a person can act on, saying why.
    metrics: flat numbers worth charting across versions.
    evidence: everything else that produced the verdict; JSON-serialisable.
    device: the onnxruntime execution provider that actually ran the model.
    timings: seconds spent per phase (load, inference, ...).
    isolation: the sandbox level the gate ran under (see workers.sandbox.isolation).
    """

    gate: str
    verdict: GateVerdict
    summary: str
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)
    device: str = ""
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    isolation: str = ""

    def __post_init__(self):
        if self.verdict not in OUTCOMES:
            raise ValueError(f"verdict must be one of {OUTCOMES}, got {self.verdict!r}")
        self.verdict = GateVerdict(self.verdict)

    @property
    def passed(self) -> bool:
        return self.verdict == GateVerdict.PASS

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy, for storage and the API."""
        # Not dataclasses.asdict: it deep-copies number by number, 2 s on Python 3.11 (0.1 s on 3.12) for
        # the million cells of a 1000-class confusion matrix, more than the gate's inference of a real model.
        return {field.name: _copied(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def error(cls, gate: str, summary: str, **evidence: Any) -> GateOutcome:
        """The outcome of a gate that could not measure the model at all."""
        return cls(gate=gate, verdict=GateVerdict.ERROR, summary=summary, evidence=evidence)

    @classmethod
    def from_sandbox(cls, gate: str, answer: Any) -> GateOutcome:
        """An outcome from what a sandbox job answered, checked field by field.

        The job ran next to a hostile model, so its answer is data to validate:
        unknown keys are dropped, text is cut short, numbers must be numbers.
        """
        if not isinstance(answer, dict) or answer.get("verdict") not in OUTCOMES:
            return cls.error(gate, f"{gate} answered without a verdict", code="sandbox_bad_result")
        evidence = answer.get("evidence") if isinstance(answer.get("evidence"), dict) else {}
        if not shallow_json(evidence):
            return cls.error(gate, f"{gate} answered with evidence nested deeper than {MAX_EVIDENCE_DEPTH} levels",
                             code="sandbox_bad_result")
        return cls(
            gate=gate, verdict=answer["verdict"], summary=str(answer.get("summary", ""))[:_MAX_SUMMARY],
            metrics=_numbers(answer.get("metrics")), evidence=evidence,
            device=str(answer.get("device", ""))[:64], timings=_numbers(answer.get("timings")),
        )


_MAX_SUMMARY = 2000
# Deep enough for any evidence a gate writes; shallow enough that rendering it never nears the recursion limit.
MAX_EVIDENCE_DEPTH = 12


def shallow_json(value: Any, depth: int = 0) -> bool:
    """True when `value` nests no deeper than MAX_EVIDENCE_DEPTH (checked without recursion limits biting)."""
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if level > MAX_EVIDENCE_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return True


_ATOMS = frozenset({str, int, float, bool, type(None)})


def _copied(value: Any) -> Any:
    """A deep copy of JSON-shaped data, as dataclasses.asdict makes it, with flat lists copied at C speed."""
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list) and set(map(type, value)) <= _ATOMS:
        return value.copy()  # immutable items: a shallow copy is a deep one
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_copied(item) for item in value)
    if isinstance(value, tuple):  # a named tuple, rebuilt field by field as asdict does
        return type(value)(*(_copied(item) for item in value))
    return copy.deepcopy(value)


def _numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(k)[:100]: v for k, v in value.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
