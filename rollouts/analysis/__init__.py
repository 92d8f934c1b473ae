"""Canary analysis as pure functions of plain numbers: SLO burn rate,
anytime-valid canary-vs-stable tests of errors, latency and predicted-class
mix, the traffic-split guard, robust counter increases, and their
combination. No I/O here; `rollouts.metrics` fetches the numbers from Prometheus.
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
from rollouts.analysis.class_mix import ClassMixResult, check_class_mix, log_class_mix_e_value
from rollouts.analysis.counts import series_increase
from rollouts.analysis.latency import LatencyResult, check_latency, log_latency_bayes_factor, quantile_from_buckets
from rollouts.analysis.result import CheckResult, Verdict
from rollouts.analysis.sequential import (
    SequentialTestResult,
    bayes_factor,
    check_canary_errors,
    log_bayes_factor,
)
from rollouts.analysis.traffic_split import TrafficSplitResult, check_traffic_split, log_split_e_value
from rollouts.analysis.verdict import ALL_CHECKS, DEFAULT_CHECKS, AnalysisConfig, CombinedVerdict, combine

__all__ = [
    "ALL_CHECKS",
    "DEFAULT_CHECKS",
    "ClassMixResult",
    "TrafficSplitResult",
    "check_class_mix",
    "check_traffic_split",
    "log_class_mix_e_value",
    "log_latency_bayes_factor",
    "log_split_e_value",
    "series_increase",
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
