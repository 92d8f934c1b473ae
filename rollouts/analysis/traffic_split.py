"""The traffic-split guard: does the canary get the share of requests the
router was set to give it? If not, the experiment is broken (replica ratios
round, a load balancer pins connections, pods are not ready), the verdict is
*invalid*: the rollout holds, never promotes, and says why; the other tests
go on using the share the canary really served.

The model. Each request goes to the canary with probability ``q``. The
router set a share ``w`` (for a replica ratio, the canary's pods over all
pods; for a route, its weight); we allow ``q`` within ``tolerance`` of it,
H0: ``|q - w| <= d``. H1 is any other ``q``.

The e-value (a sample-ratio-mismatch test in the manner of Lindon & Malek,
NeurIPS 2022, with a composite null). After ``x`` canary requests of ``n``:

    E = [B(x + 1, n - x + 1) / B(1, 1)] / max_{|q - w| <= d} q^x (1 - q)^(n - x)

the numerator the likelihood under a uniform prior on ``q``, the denominator
the likelihood at the best ``q`` the null allows (the observed share clipped
to ``[w - d, w + d]``). For the true ``q*`` in H0 the denominator is at least
``q*^x (1 - q*)^(n - x)``, so ``E`` never exceeds the Bayes factor against
``q*``, a non-negative martingale with mean 1 under ``q*``; by Ville's
inequality ``P_H0(sup_n E_n >= 1/alpha) <= alpha``: a correct split is held
as invalid with probability at most ``alpha`` however often it is looked at.
Worked example: ``w = 1/2``, ``d = 0``, both of 2 requests the canary's:
``E = (1/3) / (1/4) = 4/3``; with ``d = 0.1`` the null allows ``q = 0.6``:
``E = (1/3) / 0.36 = 0.926``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from rollouts.analysis.result import CheckResult, Verdict


def log_split_e_value(canary_requests: int, total_requests: int, intended_share: float, tolerance: float) -> float:
    """Natural log of ``E`` above."""
    x, n = canary_requests, total_requests
    low, high = max(0.0, intended_share - tolerance), min(1.0, intended_share + tolerance)
    q = min(max(x / n if n else intended_share, low), high)
    log_marginal = special.betaln(x + 1, n - x + 1)  # B(1, 1) = 1
    log_null = special.xlogy(x, q) + special.xlog1py(n - x, -q)
    return float(log_marginal - log_null)


@dataclass(frozen=True)
class TrafficSplitResult(CheckResult):
    """Outcome of the traffic-split guard: intended and observed share, and the evidence."""

    check: str = "traffic_split"
    intended_share: float | None = None
    observed_share: float | None = None
    tolerance: float = 0.0
    canary_requests: int | None = None
    stable_requests: int | None = None
    min_requests: int = 0
    e_value: float | None = None
    log10_e_value: float | None = None
    invalid_at_e_value: float = 0.0


def check_traffic_split(
    canary_requests: float | None,
    stable_requests: float | None,
    intended_share: float | None,
    *,
    alpha: float,
    tolerance: float,
    min_requests: int,
) -> TrafficSplitResult:
    """Invalid when E >= 1/alpha; pass once the canary served ``min_requests`` and
    E <= 1 (the split favours the router's share); otherwise inconclusive."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    common = dict(intended_share=intended_share, tolerance=tolerance, min_requests=min_requests,
                  invalid_at_e_value=1.0 / alpha)
    if canary_requests is None or stable_requests is None or intended_share is None:
        return TrafficSplitResult(Verdict.INCONCLUSIVE, "no request counts or intended share for one of the arms",
                                  **common)
    x, y = int(round(canary_requests)), int(round(stable_requests))
    observed = x / (x + y) if x + y else None
    log_e = log_split_e_value(x, x + y, intended_share, tolerance)
    e = math.exp(min(log_e, 700.0))
    numbers = dict(observed_share=observed, canary_requests=x, stable_requests=y, e_value=e,
                   log10_e_value=log_e / math.log(10))
    said = (f"canary served {x} of {x + y} requests ({_pct(observed)}) where the router set "
            f"{intended_share:.1%} (±{tolerance:.1%})")
    if e >= 1.0 / alpha:
        return TrafficSplitResult(
            Verdict.INVALID,
            f"traffic split invalid: {said}, e-value {e:.3g} >= {1.0 / alpha:.0f}; "
            f"holding: the router does not send the canary what it was set to", **common, **numbers)
    if x < min_requests:
        return TrafficSplitResult(Verdict.INCONCLUSIVE, f"{said}: fewer than {min_requests} canary requests",
                                  **common, **numbers)
    if e <= 1.0:
        return TrafficSplitResult(Verdict.PASS, f"{said} (e-value {e:.3g})", **common, **numbers)
    return TrafficSplitResult(Verdict.INCONCLUSIVE, f"{said}: e-value {e:.3g} neither settles the split nor "
                                                    f"reaches {1.0 / alpha:.0f}", **common, **numbers)


def _pct(share: float | None) -> str:
    return "no requests" if share is None else f"{share:.1%}"
