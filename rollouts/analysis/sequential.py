"""Canary against stable: an anytime-valid sequential test on how the errors
split between the two arms, so a bad canary is caught within seconds of
traffic and a good one is not rolled back by an unlucky tick.

The model. Each arm serves a share of the traffic: the canary ``p0``, stable
``1 - p0``. If both versions fail at the same rate (H0), each error is the
canary's with probability ``p0``, whatever that rate is; so conditional on
the total number of errors ``n``, the canary's errors are
``X ~ Binomial(n, p0)``. (This conditions the unknown common error rate away;
with requests as independent trials it is exact for Poisson arrivals and a
close approximation otherwise, since errors are rare.) A worse canary takes
a larger share: H1 is ``p > p0`` (one-sided; a canary that is *better* is
no reason to roll back).

The Bayes factor. Put a prior on H1: ``Beta(a, b)`` restricted to
``(p0, 1)``. The Bayes factor of H1 against H0 after ``x`` canary errors out
of ``n`` is

    BF = [B(x + a, n - x + b) / B(a, b)]
         * [S(p0; x + a, n - x + b) / S(p0; a, b)]
         / [p0^x (1 - p0)^(n - x)]

where ``B`` is the Beta function and ``S(p0; ., .)`` the Beta survival
function at ``p0`` (the prior and posterior mass above ``p0``). Worked
example: ``p0 = 1/2``, uniform prior (``a = b = 1``), ``x = n = 2``:
``BF = (∫_{1/2}^1 p^2 dp / (1/2)) / (1/2)^2 = (7/12) / (1/4) = 7/3``.

Why peeking every tick is safe. As errors arrive one by one, BF is a
mixture over ``p`` of likelihood ratios ``prod (p/p0)^x_i ((1-p)/(1-p0))^(1-x_i)``;
under H0 each such product is a non-negative martingale with mean 1, and so
is their mixture. Ville's inequality bounds the chance that it *ever* reaches
``1/alpha``: ``P_H0(sup_n BF_n >= 1/alpha) <= alpha``. The controller looks
at BF at its ticks, a sub-sequence of those ``n``, so failing as soon as
``BF >= 1/alpha`` keeps the false-rollback rate under ``alpha`` no matter how
often it looks or when it stops. A fixed-sample test (a p-value each tick)
has no such bound: its false-alarm rate grows with every look.

Two assumptions the caller must keep: the counts are from one traffic share
(count from the start of the current step, not across steps), and ``p0`` is
the share of *requests* the canary actually served, not the weight asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from rollouts.analysis.result import CheckResult, Verdict


def log_bayes_factor(canary_errors, total_errors, canary_share, prior_a=1.0, prior_b=1.0):
    """Natural log of the Bayes factor above; works elementwise on numpy arrays."""
    x = np.asarray(canary_errors, dtype=float)
    n = np.asarray(total_errors, dtype=float)
    p0 = np.asarray(canary_share, dtype=float)
    with np.errstate(divide="ignore"):
        log_marginal_h1 = (
            special.betaln(x + prior_a, n - x + prior_b)
            - special.betaln(prior_a, prior_b)
            + np.log(special.betaincc(x + prior_a, n - x + prior_b, p0))
            - np.log(special.betaincc(prior_a, prior_b, p0))
        )
        log_likelihood_h0 = special.xlogy(x, p0) + special.xlog1py(n - x, -p0)
    return log_marginal_h1 - log_likelihood_h0


def bayes_factor(canary_errors, total_errors, canary_share, prior_a=1.0, prior_b=1.0):
    """Evidence that the canary takes more than its share of errors (H1) over H0."""
    return np.exp(log_bayes_factor(canary_errors, total_errors, canary_share, prior_a, prior_b))


@dataclass(frozen=True)
class SequentialTestResult(CheckResult):
    """Outcome of the sequential error-split test, with the numbers behind it."""

    check: str = "canary_vs_stable_errors"
    canary_errors: int | None = None
    stable_errors: int | None = None
    canary_share: float | None = None
    canary_requests: float | None = None
    min_requests: int = 0
    bayes_factor: float | None = None
    log10_bayes_factor: float | None = None
    rollback_at_bayes_factor: float = 0.0
    pass_at_or_below_bayes_factor: float = 1.0
    prior_a: float = 1.0
    prior_b: float = 1.0


def check_canary_errors(
    canary_errors: float | None,
    stable_errors: float | None,
    canary_share: float | None,
    canary_requests: float | None,
    *,
    alpha: float,
    min_requests: int,
    pass_at_or_below_bayes_factor: float = 1.0,
    prior_a: float = 1.0,
    prior_b: float = 1.0,
) -> SequentialTestResult:
    """Fail when BF >= 1/alpha; pass once the canary served ``min_requests``
    and the errors do not favour "canary worse" (BF <= the pass bound, 1 by
    default: zero errors on both arms gives exactly 1); otherwise inconclusive.

    Counts are rounded to whole errors: Prometheus' ``increase()``
    extrapolates, but errors are events.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    common = dict(
        canary_share=canary_share,
        canary_requests=canary_requests,
        min_requests=min_requests,
        rollback_at_bayes_factor=1.0 / alpha,
        pass_at_or_below_bayes_factor=pass_at_or_below_bayes_factor,
        prior_a=prior_a,
        prior_b=prior_b,
    )
    if canary_errors is None or stable_errors is None or canary_share is None:
        return SequentialTestResult(
            Verdict.INCONCLUSIVE, "no error counts or traffic share for one of the arms", **common
        )
    if not 0.0 < canary_share < 1.0:
        return SequentialTestResult(
            Verdict.INCONCLUSIVE,
            f"canary traffic share {canary_share:.3f} leaves nothing to compare against",
            **common,
        )
    x, y = int(round(canary_errors)), int(round(stable_errors))
    log_bf = float(log_bayes_factor(x, x + y, canary_share, prior_a, prior_b))
    bf = math.exp(min(log_bf, 700.0))  # past e^700 the number only overflows; the log keeps it
    counts = dict(canary_errors=x, stable_errors=y, bayes_factor=bf, log10_bayes_factor=log_bf / math.log(10))
    if bf >= 1.0 / alpha:
        verdict = Verdict.FAIL
        reason = (
            f"canary has {x} of {x + y} errors at {canary_share:.1%} of traffic: "
            f"Bayes factor {bf:.3g} >= {1.0 / alpha:.0f}, the canary fails more often than stable"
        )
    elif canary_requests is None or canary_requests < min_requests:
        verdict = Verdict.INCONCLUSIVE
        reason = f"canary served {canary_requests or 0:.0f} of the {min_requests} requests needed to pass"
    elif bf <= pass_at_or_below_bayes_factor:
        verdict = Verdict.PASS
        reason = f"canary has {x} of {x + y} errors at {canary_share:.1%} of traffic (Bayes factor {bf:.3g})"
    else:
        verdict = Verdict.INCONCLUSIVE
        reason = (
            f"canary has {x} of {x + y} errors at {canary_share:.1%} of traffic: Bayes factor {bf:.3g} "
            f"is neither low enough to pass nor {1.0 / alpha:.0f} to roll back"
        )
    return SequentialTestResult(verdict, reason, **common, **counts)
