"""The statistics of the empirical privacy audit: a high-confidence lower bound on epsilon.

An (epsilon, delta)-DP mechanism M satisfies, for neighbouring D, D' and every output set S,
P[M(D) in S] <= e^epsilon P[M(D') in S] + delta, and the same with D and D' swapped. Any test
that says "D" when a score of the output is at or above a threshold therefore gives

    epsilon >= log((TPR - delta) / FPR),   TPR = P[score(M(D)) >= t],  FPR = P[score(M(D')) >= t].

``threshold_audit`` estimates this from trials on D and on D' with exact (Clopper-Pearson)
binomial bounds: TPR from below and FPR from above, each one-sided at confidence
1 - (1 - confidence) / 2, so both hold together with probability >= ``confidence``. The
threshold and direction are chosen on the first part of the trials (``select_fraction``) and
the bound is computed on the rest only, so choosing the best of many thresholds costs no
confidence (the chosen test is fixed before the trials it is judged on are looked at).

``release_epsilon`` is the epsilon a single Gaussian release claims (dp_accounting's RDP
accountant, the one the project calibrates with): the claim one audited release is held to.

Example::

    bound = threshold_audit(scores_on_d, scores_on_d_prime, delta=1e-5)
    bound.eps_lb, bound.threshold, bound.direction
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from wasp_jax.privacy.accounting import epsilon_of

#: Most thresholds tried per direction when selecting the test (quantiles of the scores).
MAX_THRESHOLDS = 4096


def cp_lower(k, n, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound at level 1 - alpha on p, given k of n successes."""
    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = stats.beta.ppf(alpha, k, n - k + 1)
    return np.where(k <= 0, 0.0, out)


def cp_upper(k, n, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound at level 1 - alpha on p, given k of n successes."""
    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = stats.beta.ppf(1.0 - alpha, k + 1, n - k)
    return np.where(k >= n, 1.0, out)


def _eps(tp, fp, n_pos, n_neg, delta, alpha):
    """log((TPR_lower - delta) / FPR_upper), 0 where the numerator is not positive."""
    num = cp_lower(tp, n_pos, alpha) - delta
    den = cp_upper(fp, n_neg, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = np.log(np.where(num > 0, num, np.nan) / den)
    return np.where(np.isfinite(val), np.maximum(val, 0.0), 0.0)


@dataclasses.dataclass(frozen=True)
class AuditBound:
    """The chosen threshold test and its lower bound (on the held-out trials).

    Attributes:
      eps_lb: lower bound on epsilon holding with probability >= ``confidence`` (0: none).
      threshold: score threshold of the test.
      direction: "D" (say D when score >= threshold) or "D'" (say D' when score <= threshold).
      tp, fp: held-out trials that the test flags, on the dataset it names and on the other.
      n: held-out trials per dataset; ``selected_on``: trials per dataset used for the choice.
      tpr_lower, fpr_upper: the Clopper-Pearson bounds the lower bound is computed from.
    """

    eps_lb: float
    threshold: float
    direction: str
    tp: int
    fp: int
    n: int
    selected_on: int
    tpr_lower: float
    fpr_upper: float
    confidence: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _counts(pos, neg, thresholds, direction):
    """(tp, fp) of the test at each threshold: ``pos`` should be flagged, ``neg`` should not."""
    pos, neg = np.sort(pos), np.sort(neg)
    if direction == "D":  # flag score >= t
        tp = pos.size - np.searchsorted(pos, thresholds, side="left")
        fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    else:  # flag score <= t
        tp = np.searchsorted(pos, thresholds, side="right")
        fp = np.searchsorted(neg, thresholds, side="right")
    return tp, fp


def threshold_audit(
    scores_d,
    scores_d_prime,
    *,
    delta: float,
    confidence: float = 0.95,
    select_fraction: float = 0.5,
) -> AuditBound:
    """The best threshold test on scores of M(D) and M(D'), bounded on held-out trials.

    Args:
      scores_d, scores_d_prime: (n,) real scores of independent trials on D and on D' (in
        trial order; the first ``select_fraction`` of each choose the test).
      delta: the delta of the claim.
      confidence: probability with which the returned bound holds.
      select_fraction: share of the trials used to choose the threshold and direction.

    Raises:
      ValueError: arrays of different lengths, too few trials or bad parameters.
    """
    d, dp = np.asarray(scores_d, np.float64), np.asarray(scores_d_prime, np.float64)
    if d.ndim != 1 or d.shape != dp.shape:
        raise ValueError(f"scores must be two (n,) arrays, got {d.shape} and {dp.shape}")
    if not (0 < confidence < 1 and 0 < select_fraction < 1 and 0 <= delta < 1):
        raise ValueError("need 0 < confidence < 1, 0 < select_fraction < 1, 0 <= delta < 1")
    n_sel = int(d.size * select_fraction)
    if n_sel < 1 or d.size - n_sel < 1:
        raise ValueError(f"need at least 2 trials per dataset, got {d.size}")
    if not (np.isfinite(d).all() and np.isfinite(dp).all()):
        raise ValueError("scores must be finite")
    alpha = (1.0 - confidence) / 2.0
    sel_d, sel_dp, held_d, held_dp = d[:n_sel], dp[:n_sel], d[n_sel:], dp[n_sel:]
    pool = np.unique(np.concatenate([sel_d, sel_dp]))
    if pool.size > MAX_THRESHOLDS:
        pool = np.unique(np.quantile(pool, np.linspace(0, 1, MAX_THRESHOLDS)))
    # midpoints between neighbouring observed values, plus both ends: no test is lost
    cand = np.concatenate([[pool[0] - 1.0], (pool[1:] + pool[:-1]) / 2.0, [pool[-1] + 1.0]])
    best = (-1.0, cand[0], "D")
    for direction, pos, neg in (("D", sel_d, sel_dp), ("D'", sel_dp, sel_d)):
        tp, fp = _counts(pos, neg, cand, direction)
        eps = _eps(tp, fp, n_sel, n_sel, delta, alpha)
        i = int(np.argmax(eps))
        if eps[i] > best[0]:
            best = (float(eps[i]), float(cand[i]), direction)
    _, t, direction = best
    pos, neg = (held_d, held_dp) if direction == "D" else (held_dp, held_d)
    tp, fp = (int(x[0]) for x in _counts(pos, neg, np.array([t]), direction))
    n = held_d.size
    return AuditBound(
        eps_lb=float(_eps(tp, fp, n, n, delta, alpha)),
        threshold=t,
        direction=direction,
        tp=tp,
        fp=fp,
        n=n,
        selected_on=n_sel,
        tpr_lower=float(cp_lower(tp, n, alpha)),
        fpr_upper=float(cp_upper(fp, n, alpha)),
        confidence=float(confidence),
    )


def release_epsilon(sigma: float, sensitivity: float, delta: float) -> float:
    """Epsilon at ``delta`` of one Gaussian release with this sigma and sensitivity (RDP)."""
    if sigma <= 0:
        return math.inf
    return float(epsilon_of([sigma / sensitivity], delta, method="rdp"))
