"""Canary analysis as pure functions of plain numbers: SLO burn rate, an
anytime-valid canary-vs-stable error test, latency, and their combination.
No I/O here; `rollouts.metrics` fetches the numbers from Prometheus.
"""

from rollouts.analysis.burn_rate import (
    WORKBOOK_PAGE_POLICIES,
    BurnRatePolicy,
    BurnRateResult,
    BurnWindowPair,
    RequestCounts,
    burn_rate,
    check_burn_rate,
    scaled_burn_windows,
)
from rollouts.analysis.latency import LatencyResult, check_latency, quantile_from_buckets
from rollouts.analysis.result import CheckResult, Verdict
from rollouts.analysis.sequential import (
    SequentialTestResult,
    bayes_factor,
    check_canary_errors,
    log_bayes_factor,
)
from rollouts.analysis.verdict import AnalysisConfig, CombinedVerdict, combine

__all__ = [
    "WORKBOOK_PAGE_POLICIES",
    "AnalysisConfig",
    "BurnRatePolicy",
    "BurnRateResult",
    "BurnWindowPair",
    "CheckResult",
    "CombinedVerdict",
    "LatencyResult",
    "RequestCounts",
    "SequentialTestResult",
    "Verdict",
    "bayes_factor",
    "burn_rate",
    "check_burn_rate",
    "check_canary_errors",
    "check_latency",
    "combine",
    "log_bayes_factor",
    "quantile_from_buckets",
    "scaled_burn_windows",
]
