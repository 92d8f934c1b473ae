"""One analysis verdict from the individual checks, and the settings every
check reads (`AnalysisConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollouts.analysis.burn_rate import WORKBOOK_PAGE_POLICIES, BurnRatePolicy
from rollouts.analysis.result import CheckResult, Verdict, to_json_value


#: Every check by the name its result carries; a model's policy picks among them.
BURN_RATE, ERRORS, LATENCY, TRAFFIC_SPLIT, CLASS_MIX = (
    "burn_rate", "canary_vs_stable_errors", "latency_p95", "traffic_split", "class_mix")
ALL_CHECKS = (BURN_RATE, ERRORS, LATENCY, TRAFFIC_SPLIT, CLASS_MIX)
# The class mix needs servers that count predictions by class (mlcp serve does):
# a policy turns it on for classifiers.
DEFAULT_CHECKS = (BURN_RATE, ERRORS, LATENCY, TRAFFIC_SPLIT)


@dataclass(frozen=True)
class AnalysisConfig:
    """What a rollout's analysis judges against.

    ``min_requests`` applies to every burn-rate window and to the canary's
    traffic in the step; ``alpha`` bounds the false-rollback rate of the
    sequential tests together (errors, latency, class mix: each runs at
    ``alpha_per_test``) and the false-hold rate of the traffic-split guard; ``min_window_s`` keeps compressed burn windows at
    least this long (set it to two scrape intervals or more);
    ``split_tolerance`` is how far (absolute share) the canary's share of
    requests may sit from the share the router set before the split is
    invalid; ``evaluation_delay_s`` evaluates every query that long before
    the tick, so a later replay reads exactly the samples the controller read
    (set it to a scrape interval or more for exact backtests).
    """

    slo_target: float = 0.999
    latency_threshold_ms: float = 300.0
    min_requests: int = 100
    alpha: float = 0.05
    burn_policies: tuple[BurnRatePolicy, ...] = WORKBOOK_PAGE_POLICIES
    min_window_s: float = 30.0
    pass_at_or_below_bayes_factor: float = 1.0
    checks: tuple[str, ...] = DEFAULT_CHECKS
    split_tolerance: float = 0.02
    evaluation_delay_s: float = 0.0

    def __post_init__(self):
        unknown = set(self.checks) - set(ALL_CHECKS)
        if unknown:
            raise ValueError(f"unknown checks {sorted(unknown)}; choose from {list(ALL_CHECKS)}")

    @property
    def alpha_per_test(self) -> float:
        """Each sequential test that can roll back (errors, latency, class mix) runs at
        ``alpha / m`` for the ``m`` of them this policy runs, so the chance that any one of
        them ever fails a good canary is at most ``alpha`` (a union bound)."""
        m = sum(1 for check in (ERRORS, LATENCY, CLASS_MIX) if check in self.checks)
        return self.alpha / max(1, m)

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
    """Any fail fails; otherwise any invalid, then any inconclusive (or no checks at all) holds; else pass.

    Fail wins over invalid: the other tests use the share the canary really
    served, so a canary proven worse is worse whatever the router meant to send it.
    """
    checks = tuple(checks)
    failed = [c for c in checks if c.verdict == Verdict.FAIL]
    invalid = [c for c in checks if c.verdict == Verdict.INVALID]
    unsure = [c for c in checks if c.verdict == Verdict.INCONCLUSIVE]
    if failed:
        return CombinedVerdict(Verdict.FAIL, "; ".join(c.reason for c in failed), checks)
    if invalid:
        return CombinedVerdict(Verdict.INVALID, "; ".join(c.reason for c in invalid), checks)
    if unsure:
        return CombinedVerdict(Verdict.INCONCLUSIVE, "; ".join(c.reason for c in unsure), checks)
    if not checks:
        return CombinedVerdict(Verdict.INCONCLUSIVE, "no checks ran", checks)
    return CombinedVerdict(Verdict.PASS, "every check passed", checks)
