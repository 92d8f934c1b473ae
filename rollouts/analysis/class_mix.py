"""Predicted-class mix, label-free: does the canary predict the classes in the
same proportions as stable on the same traffic? A canary that silently stops
predicting a class (what the golden-set gate catches offline) answers 200s
as fast as stable, so errors, latency and burn rate all pass; its class mix
does not.

The model. Every prediction has an arm (canary or stable) and a class
``k = 1..K`` (the classes the servers export; `mlcp serve` exports all of a
model's output classes from start-up, so ``K`` is fixed before any data).
Traffic reaches the arms at random, so if the canary predicts like stable
(H0) the class is independent of the arm: given the classes predicted, each
prediction is the canary's with one probability ``q`` whatever its class.
H1: the canary's share ``q_k`` differs between classes (a dropped class has
``q_k = 0``).

The e-value (a Dirichlet-multinomial mixture in the manner of Lindon &
Malek, NeurIPS 2022: for each class, the arms of its predictions are a
two-category multinomial, mixed over a Dirichlet, i.e. Beta, prior; the
composite null handled as in universal inference). With the canary's count
``c_k`` and stable's ``s_k`` of class ``k``, totals ``C``, ``S``, ``N``:

    E = prod_k [B(c_k + a, s_k + b) / B(a, b)] / [(C / N)^C (S / N)^S]

the numerator the probability of the arms under independent ``Beta(a, b)``
priors on each ``q_k``, the denominator its largest probability under H0
(at the observed share). For the true ``q*`` the denominator is at least the
probability under ``q*``, so ``E`` never exceeds the Bayes factor against
``q*``, a non-negative martingale with mean 1 under H0; Ville's inequality
gives ``P_H0(sup_N E_N >= 1/alpha) <= alpha``: failing when ``E >= 1/alpha``
keeps false rollbacks under ``alpha`` however often the controller looks.

The prior is centred on the share the router set, ``w`` (known before any
data, so the guarantee holds), with strength ``a + b = 50``: a dropped class
at 10% of traffic and 10 equally likely classes reaches ``E >= 20`` after
about 1,200 predictions; a uniform Dirichlet over all ``2K`` (arm, class)
cells, which must also learn the class mix, needed more than 4,000.
Worked example: ``a = b = 1``, two classes, the canary predicted class b
twice, stable class a twice: numerator ``B(1, 3) B(3, 1) = 1/9``,
denominator ``(1/2)^2 (1/2)^2 = 1/16``, ``E = 16/9``.

Which classes moved is said by each class's adjusted residual (how many
standard errors the canary's count of it sits from its share of the class):
a description for people, not part of the decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from rollouts.analysis.result import CheckResult, Verdict

#: A class whose canary count sits this many standard errors from its share is named as moved.
MOVED_AT_RESIDUAL = 3.0


#: ``a + b`` of each class's Beta prior: how sure, before data, that a class's split sits near the router's.
PRIOR_STRENGTH = 50.0


def log_class_mix_e_value(canary_counts, stable_counts, prior_share: float = 0.5,
                          prior_strength: float = PRIOR_STRENGTH) -> float:
    """Natural log of ``E`` above for two equal-length count vectors; the prior is
    ``Beta(strength * share, strength * (1 - share))`` on each class's canary share."""
    c, s = np.asarray(canary_counts, dtype=float), np.asarray(stable_counts, dtype=float)
    a, b = prior_strength * prior_share, prior_strength * (1.0 - prior_share)
    log_marginal = float(np.sum(special.betaln(c + a, s + b) - special.betaln(a, b)))
    C, S = c.sum(), s.sum()
    if C + S == 0:
        return log_marginal
    log_null = special.xlogy(C, C / (C + S)) + special.xlogy(S, S / (C + S))
    return float(log_marginal - log_null)


def adjusted_residuals(canary_counts, stable_counts) -> np.ndarray:
    """Per class: (canary count - its expected share of the class) / standard error, under independence."""
    c, s = np.asarray(canary_counts, dtype=float), np.asarray(stable_counts, dtype=float)
    n_k, C, N = c + s, c.sum(), (c + s).sum()
    if N == 0 or C in (0, N):
        return np.zeros_like(c)
    expected = C * n_k / N
    variance = expected * (1 - C / N) * (1 - n_k / N)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(variance > 0, (c - expected) / np.sqrt(variance), 0.0)


@dataclass(frozen=True)
class ClassMixResult(CheckResult):
    """Outcome of the class-mix test: each class's counts and shares, and the evidence."""

    check: str = "class_mix"
    canary_predictions: int | None = None
    stable_predictions: int | None = None
    min_requests: int = 0
    prior_share: float | None = None
    e_value: float | None = None
    log10_e_value: float | None = None
    rollback_at_e_value: float = 0.0
    pass_at_or_below_e_value: float = 1.0
    moved: tuple[str, ...] = ()
    classes: tuple[dict, ...] = field(default_factory=tuple)


def check_class_mix(
    canary: Mapping[str, float] | None,
    stable: Mapping[str, float] | None,
    *,
    alpha: float,
    min_requests: int,
    prior_share: float | None = None,
    pass_at_or_below_e_value: float = 1.0,
) -> ClassMixResult:
    """Fail when E >= 1/alpha, naming the classes that moved; pass once the canary
    made ``min_requests`` predictions and E <= the pass bound; else inconclusive.

    ``canary`` and ``stable`` map a class label to its predictions in the
    step's window; a class either arm exports counts for both (0 if missing).
    ``prior_share`` is the canary's share the router set (None: 1/2).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    common = dict(min_requests=min_requests, prior_share=prior_share, rollback_at_e_value=1.0 / alpha,
                  pass_at_or_below_e_value=pass_at_or_below_e_value)
    if not canary or not stable:
        return ClassMixResult(Verdict.INCONCLUSIVE, "no predicted-class counts for one of the arms", **common)
    labels = sorted(set(canary) | set(stable), key=_label_order)
    c = [int(round(canary.get(k, 0.0))) for k in labels]
    s = [int(round(stable.get(k, 0.0))) for k in labels]
    C, S = sum(c), sum(s)
    log_e = log_class_mix_e_value(c, s, 0.5 if prior_share is None else min(max(prior_share, 0.01), 0.99))
    e = math.exp(min(log_e, 700.0))
    residuals = adjusted_residuals(c, s)
    rows = tuple({"class": k, "canary": ck, "stable": sk, "canary_share": ck / C if C else None,
                  "stable_share": sk / S if S else None, "residual": float(r)}
                 for k, ck, sk, r in zip(labels, c, s, residuals))
    order = sorted(range(len(labels)), key=lambda i: -abs(residuals[i]))
    moved = tuple(labels[i] for i in order if abs(residuals[i]) >= MOVED_AT_RESIDUAL) or (
        (labels[order[0]],) if order and abs(residuals[order[0]]) > 0 else ())
    numbers = dict(canary_predictions=C, stable_predictions=S, e_value=e, log10_e_value=log_e / math.log(10),
                   moved=moved, classes=rows)
    if e >= 1.0 / alpha:
        described = ", ".join(f"class {r['class']} {_pct(r['canary_share'])} of canary predictions vs "
                              f"{_pct(r['stable_share'])} of stable's" for r in rows if r["class"] in moved[:3])
        return ClassMixResult(Verdict.FAIL, f"canary's predicted-class mix differs from stable's: {described} "
                                            f"(e-value {e:.3g} >= {1.0 / alpha:.0f})", **common, **numbers)
    if C < min_requests:
        return ClassMixResult(Verdict.INCONCLUSIVE, f"canary made {C} of the {min_requests} predictions needed "
                                                    f"to judge its class mix", **common, **numbers)
    if e <= pass_at_or_below_e_value:
        return ClassMixResult(Verdict.PASS, f"canary predicts the {len(labels)} classes as stable does "
                                            f"(e-value {e:.3g} over {C} canary predictions)", **common, **numbers)
    return ClassMixResult(Verdict.INCONCLUSIVE, f"canary's class mix may differ from stable's: e-value {e:.3g} is "
                                                f"neither low enough to pass nor {1.0 / alpha:.0f} to roll back",
                          **common, **numbers)


def _label_order(label: str):
    return (0, int(label), "") if str(label).isdigit() else (1, 0, str(label))


def _pct(share: float | None) -> str:
    return "none" if share is None else f"{share:.1%}"
