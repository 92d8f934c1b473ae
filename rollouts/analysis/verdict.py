"""One analysis verdict from the individual checks, and the settings every
check reads (`AnalysisConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollouts.analysis.burn_rate import WORKBOOK_PAGE_POLICIES, BurnRatePolicy
from rollouts.analysis.result import CheckResult, Verdict, to_json_value


@dataclass(frozen=True)
class AnalysisConfig:
    """What a rollout's analysis judges against.

    ``min_requests`` applies to every burn-rate window and to the canary's
    traffic in the step; ``alpha`` bounds the false-rollback rate of the
    sequential test; ``min_window_s`` keeps compressed burn windows at least
    this long (set it to two scrape intervals or more).
    """

    slo_target: float = 0.999
    latency_threshold_ms: float = 300.0
    min_requests: int = 100
    alpha: float = 0.05
    max_latency_ratio: float = 1.5
    # The ratio check needs the canary this much slower too: a p95 over a few dozen requests of a
    # millisecond-scale model moves by 10 ms on a busy node (seen: 17 ms vs 6 ms, both healthy).
    min_latency_gap_ms: float = 25.0
    burn_policies: tuple[BurnRatePolicy, ...] = WORKBOOK_PAGE_POLICIES
    min_window_s: float = 30.0
    pass_at_or_below_bayes_factor: float = 1.0

    @property
    def burn_thresholds(self) -> tuple[float, ...]:
        """The burn-rate threshold of each window pair (14.4 and 6 by default)."""
        return tuple(p.threshold for p in self.burn_policies)


@dataclass(frozen=True)
class CombinedVerdict:
    """The verdict over all checks and the checks themselves."""

    verdict: Verdict
    reason: str
    checks: tuple[CheckResult, ...]

    def evidence(self) -> dict:
        """Verdict, reason and each check's evidence, as plain JSON values."""
        return {
            "verdict": self.verdict.value,
            "reason": self.reason,
            "checks": [to_json_value(c.evidence()) for c in self.checks],
        }


def combine(checks: Sequence[CheckResult]) -> CombinedVerdict:
    """Any fail fails; otherwise any inconclusive (or no checks at all) holds; else pass."""
    checks = tuple(checks)
    failed = [c for c in checks if c.verdict == Verdict.FAIL]
    unsure = [c for c in checks if c.verdict == Verdict.INCONCLUSIVE]
    if failed:
        return CombinedVerdict(Verdict.FAIL, "; ".join(c.reason for c in failed), checks)
    if unsure:
        return CombinedVerdict(Verdict.INCONCLUSIVE, "; ".join(c.reason for c in unsure), checks)
    if not checks:
        return CombinedVerdict(Verdict.INCONCLUSIVE, "no checks ran", checks)
    return CombinedVerdict(Verdict.PASS, "every check passed", checks)
