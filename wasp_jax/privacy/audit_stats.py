"""The statistics of the empirical privacy audit: a high-confidence lower bound on epsilon.

An (epsilon, delta)-DP mechanism M satisfies, for neighbouring D, D' and every output set S,
P[M(D) in S] <= e^epsilon P[M(D') in S] + delta, and the same with D and D' swapped. Any test
that says "D" when a score of the output is at or above a threshold therefore gives

    epsilon >= log((TPR - delta) / FPR),   TPR = P[score(M(D)) >= t],  FPR = P[score(M(D')) >= t].

``threshold_audit`` estimates this from trials on D and on D' with exact (Clopper-Pearson)
binomial bounds: TPR from below and FPR from above, each one-sided at confidence
1 - (1 - confidence) / 2, so both hold together with probability >= ``confidence``. The
threshold and direction are chosen on the first part of the trials (``select_fraction``,
10 %) and the bound is computed on the rest only, so choosing the best of many thresholds
costs no confidence (the chosen test is fixed before the trials it is judged on are looked
at).

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

#: Thresholds tried per direction when choosing the test (evenly over the scores' range).
GRID = 1001


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
      direction: which dataset the test names and on which side of the threshold, e.g.
        "D if score >= threshold"; the bound is for that dataset against the other.
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


def _counts(pos, neg, threshold: float, sign: float):
    """(tp, fp): trials of ``pos`` and of ``neg`` with sign * score >= sign * threshold."""
    pos, neg = sign * np.asarray(pos), sign * np.asarray(neg)
    return int(np.sum(pos >= sign * threshold)), int(np.sum(neg >= sign * threshold))


#: The tests tried: (dataset the test names, sign); sign -1 flags score <= threshold.
_TESTS = (("D", 1.0), ("D", -1.0), ("D'", 1.0), ("D'", -1.0))


def _direction(name: str, sign: float) -> str:
    return f"{name} if score {'>=' if sign > 0 else '<='} threshold"


def _normal_tail(x, t):
    """P(score >= t) under a normal fitted to ``x`` (a step at its mean when it is constant)."""
    m, s = float(np.mean(x)), float(np.std(x))
    if s == 0:
        return (t <= m).astype(np.float64)
    return stats.norm.sf((t - m) / s)


def _select(sel_d, sel_dp, n_held, delta, alpha):
    """(threshold, name, sign) of the test whose bound on ``n_held`` trials per dataset is
    predicted best from normals fitted to the selection scores (ties: the middle of the
    best run of thresholds)."""
    lo = min(sel_d.min(), sel_dp.min())
    hi = max(sel_d.max(), sel_dp.max())
    grid = np.linspace(lo, hi, GRID) if hi > lo else np.array([lo])
    best = (-1.0, float(grid[0]), "D", 1.0)
    for name, sign in _TESTS:
        pos, neg = (sel_d, sel_dp) if name == "D" else (sel_dp, sel_d)
        t = sign * grid  # "score <= t" is "-score >= -t"
        tpr, fpr = _normal_tail(sign * pos, t), _normal_tail(sign * neg, t)
        eps = _eps(tpr * n_held, fpr * n_held, n_held, n_held, delta, alpha)
        top = np.flatnonzero(eps == eps.max())
        i = int(top[top.size // 2])
        if eps[i] > best[0]:
            best = (float(eps[i]), float(grid[i]), name, sign)
    return best[1:]


def threshold_audit(
    scores_d,
    scores_d_prime,
    *,
    delta: float,
    confidence: float = 0.95,
    select_fraction: float = 0.1,
) -> AuditBound:
    """The best threshold test on scores of M(D) and M(D'), bounded on held-out trials.

    The test (threshold and direction) is chosen on the first ``select_fraction`` of the
    trials: a normal distribution is fitted to each dataset's scores there, and the test that
    would give the highest bound on the remaining trials under those fits is taken. Any rule
    that looks only at the first part keeps the bound on the rest valid; the fit makes the
    choice stable (an argmax over noisy tail counts overfits), and scores far from normal get
    a weaker bound, never a wrong one.

    Args:
      scores_d, scores_d_prime: (n,) real scores of independent trials on D and on D' (in
        trial order).
      delta: the delta of the claim.
      confidence: probability with which the returned bound holds.
      select_fraction: share of the trials used to choose the test.

    Raises:
      ValueError: arrays of different lengths, too few trials or bad parameters.
    """
    d, dp = np.asarray(scores_d, np.float64), np.asarray(scores_d_prime, np.float64)
    if d.ndim != 1 or d.shape != dp.shape:
        raise ValueError(f"scores must be two (n,) arrays, got {d.shape} and {dp.shape}")
    if not (0 < confidence < 1 and 0 < select_fraction < 1 and 0 <= delta < 1):
        raise ValueError("need 0 < confidence < 1, 0 < select_fraction < 1, 0 <= delta < 1")
    n_sel = int(d.size * select_fraction)
    if n_sel < 2 or d.size - n_sel < 1:
        raise ValueError(f"too few trials ({d.size}) to choose a test and bound it")
    if not (np.isfinite(d).all() and np.isfinite(dp).all()):
        raise ValueError("scores must be finite")
    alpha = (1.0 - confidence) / 2.0
    n = d.size - n_sel
    t, name, sign = _select(d[:n_sel], dp[:n_sel], n, delta, alpha)
    held_d, held_dp = d[n_sel:], dp[n_sel:]
    pos, neg = (held_d, held_dp) if name == "D" else (held_dp, held_d)
    tp, fp = _counts(pos, neg, t, sign)
    return AuditBound(
        eps_lb=float(_eps(tp, fp, n, n, delta, alpha)),
        threshold=t,
        direction=_direction(name, sign),
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
    return float(epsilon_of([sigma / sensitivity], delta, accountant="rdp"))
