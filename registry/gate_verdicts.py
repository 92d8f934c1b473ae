"""A gate result's lifecycle: its verdicts and the one table of legal moves.

Plain Python, not Django: the gate code that runs inside the sandbox names
its verdict with the same type the registry stores (`GateOutcome.verdict`).
Only `registry.services.transition_gate` changes a stored verdict, along
`GATE_TRANSITIONS`, by compare-and-set on the verdict and delivery count it
read, so two deliveries of one gate task never both record a verdict.
"""

from enum import StrEnum


class GateVerdict(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


V = GateVerdict
GATE_TRANSITIONS: dict[str, frozenset[str]] = {
    V.PENDING: frozenset({V.RUNNING}),
    # RUNNING -> RUNNING is a redelivery after the worker died mid-gate (counted in `attempts`); -> ERROR is
    # also the poison pill, a gate whose worker died on every delivery.
    V.RUNNING: frozenset({V.RUNNING, V.PASS, V.FAIL, V.ERROR}),
    # An error is the gate failing to measure, not a verdict on the model: re-running the gates runs it again.
    V.ERROR: frozenset({V.PENDING}),
    V.PASS: frozenset(),
    V.FAIL: frozenset(),
}

# A gate's conclusion about a version: what a gate (and a sandbox job) may answer.
OUTCOMES: tuple[str, ...] = (V.PASS, V.FAIL, V.ERROR)
# Verdicts that stand: a gate with one is not run again.
DECIDED = frozenset(v for v, moves in GATE_TRANSITIONS.items() if not moves)
