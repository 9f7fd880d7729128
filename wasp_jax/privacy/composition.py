"""One budget split over several kinds of Gaussian release, composed by one accountant.

A run of WASP+ makes ``count[kind]`` releases of each kind (e.g. per-PLM usefulness once a
round, per-cluster votes once a round). The run's (epsilon, delta) is
shared by a configurable split: kind i receives the fraction ``f_i`` of the total privacy
"precision" 1/z^2 of composed Gaussians (z = sigma / sensitivity), spread evenly over its
``n_i`` releases, so that

    z_i = z_total * sqrt(n_i / f_i),        sum_i n_i / z_i^2 = 1 / z_total^2,

where z_total is the noise multiplier of one Gaussian release at (epsilon, delta). Composed
Gaussians are exactly a Gaussian of that precision (mu-GDP), so this spends the whole budget;
the result is then checked with dp_accounting's accountant over every release and nudged up
until it is within budget. Each kind's sigma is ``z_i * sensitivity_i``.

Example::

    split = calibrate_split(4.0, 1e-5, counts={"usefulness": 2, "per_cluster": 2},
                            fractions={"usefulness": 0.5, "per_cluster": 0.5})
    split.multipliers["usefulness"]          # sigma / sensitivity of each usefulness release
"""

from __future__ import annotations

import dataclasses
import math

from wasp_jax.privacy.accounting import _check_delta, _check_epsilon, calibrate_sigma, epsilon_of
from wasp_jax.privacy.release_kinds import KINDS


@dataclasses.dataclass(frozen=True)
class BudgetSplit:
    """Noise multipliers per release kind and the epsilon they spend together."""

    epsilon: float
    delta: float
    counts: dict[str, int]
    fractions: dict[str, float]
    multipliers: dict[str, float]
    epsilon_spent: float

    def sigma(self, kind: str, sensitivity: float) -> float:
        return self.multipliers[kind] * float(sensitivity)

    def all_multipliers(self) -> list[float]:
        return [z for k, z in self.multipliers.items() for _ in range(self.counts[k])]


def _check_split(counts: dict, fractions: dict) -> None:
    if not counts:
        raise ValueError("counts must name at least one release kind")
    if set(counts) != set(fractions):
        raise ValueError(
            f"fractions must name the same kinds as counts: {sorted(fractions)} vs {sorted(counts)}"
        )
    for kind, n in counts.items():
        if kind not in KINDS:
            raise ValueError(f"unknown release kind {kind!r}; choose from {tuple(KINDS)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"counts[{kind!r}] must be an integer >= 1, got {n!r}")
        f = fractions[kind]
        if not isinstance(f, int | float) or not 0 < f <= 1:
            raise ValueError(f"fractions[{kind!r}] must be in (0, 1], got {f!r}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-9):
        raise ValueError(f"the budget fractions must sum to 1, got {total!r}")


def calibrate_split(
    epsilon: float,
    delta: float,
    *,
    counts: dict[str, int],
    fractions: dict[str, float],
    accountant: str = "rdp",
) -> BudgetSplit:
    """Noise multipliers per kind so that all releases together are (epsilon, delta)-DP.

    Args:
      epsilon: total budget, > 0 (math.inf: no noise, every multiplier 0).
      delta: total delta in (0, 1).
      counts: number of releases of each kind over the run.
      fractions: share of the budget of each kind (same keys, each in (0, 1], sum 1).
      accountant: "rdp" (the releases' accountant: it covers discrete Gaussian noise) or "pld"
        (continuous Gaussian noise only), dp_accounting's accountant for the final check.
    """
    epsilon = _check_epsilon(epsilon)
    delta = _check_delta(delta)
    _check_split(counts, fractions)
    if math.isinf(epsilon):
        zero = dict.fromkeys(counts, 0.0)
        return BudgetSplit(epsilon, delta, dict(counts), dict(fractions), zero, math.inf)
    z_total = calibrate_sigma(
        epsilon, delta, num_rounds=1, l2_sensitivity=1.0, accountant=accountant
    )
    mult = {k: z_total * math.sqrt(counts[k] / fractions[k]) for k in counts}
    zs = lambda: [z for k, z in mult.items() for _ in range(counts[k])]
    spent = epsilon_of(zs(), delta, accountant=accountant)
    # a margin far below any reported digit absorbs the PLD discretisation of other groupings
    step, target = 1e-9, epsilon * (1.0 - 1e-7)
    while spent > target:
        mult = {k: z * (1.0 + step) for k, z in mult.items()}
        step *= 10.0
        spent = epsilon_of(zs(), delta, accountant=accountant)
    return BudgetSplit(epsilon, delta, dict(counts), dict(fractions), mult, float(spent))
