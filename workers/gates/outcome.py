"""What a gate concludes about a model version, and the evidence behind it.

Every gate returns one `GateOutcome`; the worker stores `to_dict()` as is, and
the web UI shows the summary first and the evidence beside production's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Verdict = Literal["pass", "fail", "error"]
VERDICTS: tuple[str, ...] = ("pass", "fail", "error")


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
    """

    gate: str
    verdict: Verdict
    summary: str
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)
    device: str = ""
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy, for storage and the API."""
        return dataclasses.asdict(self)

    @classmethod
    def error(cls, gate: str, summary: str, **evidence: Any) -> GateOutcome:
        """The outcome of a gate that could not measure the model at all."""
        return cls(gate=gate, verdict="error", summary=summary, evidence=evidence)
