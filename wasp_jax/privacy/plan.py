"""The privacy plan: the one place a run's sigma, sensitivity and epsilon are decided.

`privacy_plan(cfg)` resolves the configured release (Q, the released histograms, the
adjacency, the number of rounds T and of data parties L) into a frozen `PrivacyPlan`. The vote
stage noises with `plan.sigma` and checks `plan.l2_sensitivity` against what it releases; the
ledger records `plan.sigma` and the derived `plan.l2_sensitivity` for every release (whatever
sigma was calibrated for), so the epsilon it states is the true one; the outputs read epsilon
and delta from the plan. A plan whose derived epsilon exceeds the target (possible only under
"classic" accounting) is refused. See docs/method.md §6.3-§6.5.
"""

from __future__ import annotations

import dataclasses

from wasp_jax.config import WaspConfig
from wasp_jax.errors import ConfigError
from wasp_jax.privacy.accounting import calibrate_sigma, epsilon_of
from wasp_jax.privacy.plus_plan import plus_kinds
from wasp_jax.privacy.sensitivity import classic_delta, l2_sensitivity


@dataclasses.dataclass(frozen=True)
class PrivacyPlan:
    """The resolved noise calibration of a run (all public).

    Attributes:
      epsilon, delta: the run's total budget (epsilon may be math.inf: no noise).
      adjacency: "add_remove" or "replace_one".
      accounting: "rdp" or "classic".
      sensitivity: the sensitivity sigma is calibrated for (the exact L2 sensitivity, or
        the original's Delta under "classic", or an override of at least the L2 one).
      l2_sensitivity: the exact L2 sensitivity of one round's release: the ledger accounts
        every release with it.
      sigma: std of the noise on every released entry.
      rounds: T, the number of releases.
      num_parties: L; each party adds sigma / sqrt(L).
      releases: the released histograms of every round (WASP+: the release kinds).
      kinds: WASP+ only: (kind, sigma, sensitivity) of each kind released every round.
      noise: "secure" (from the run's secret: DP) or "seeded" (NOT DP: tests only).
    """

    @property
    def private(self) -> bool:
        """Whether the releases are differentially private (noisy, from a secret)."""
        return self.sigma > 0 and self.noise == "secure"

    epsilon: float
    delta: float
    adjacency: str
    accounting: str
    sensitivity: float
    l2_sensitivity: float
    sigma: float
    rounds: int
    num_parties: int
    releases: tuple[str, ...]
    kinds: tuple[tuple[str, float, float], ...] = ()
    noise: str = "secure"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {
            "releases": list(self.releases),
            "kinds": [list(k) for k in self.kinds],
        }

    @classmethod
    def from_dict(cls, d: dict) -> PrivacyPlan:
        kinds = tuple((str(k), float(s), float(e)) for k, s, e in d.get("kinds", ()))
        return cls(**(dict(d) | {"releases": tuple(d["releases"]), "kinds": kinds}))


def privacy_plan(cfg: WaspConfig) -> PrivacyPlan | None:
    """Sensitivity and sigma for the configured release (None: no private data is used).

    "rdp": the exact L2 sensitivity of the released histograms under the chosen
    adjacency, calibrated with dp_accounting for T Gaussian releases. "classic": the
    original's Delta and formula (docs/method.md §6.5; sigma = 9.6896 at the paper's defaults).
    """
    if not cfg.uses_private_data:
        return None
    p, T = cfg.privacy, cfg.generation.rounds
    if cfg.method == "wasp_plus":
        kinds = plus_kinds(cfg)
        return PrivacyPlan(
            epsilon=p.epsilon, delta=p.delta, adjacency=p.adjacency, accounting=p.accounting,
            sensitivity=kinds[0][2], l2_sensitivity=kinds[0][2], sigma=kinds[0][1], rounds=T,
            num_parties=1, releases=tuple(k[0] for k in kinds), kinds=kinds, noise=p.noise,
        )  # fmt: skip
    p, q, T = cfg.privacy, cfg.voting.q, cfg.generation.rounds
    nh = cfg.num_histograms
    l2 = l2_sensitivity(q, num_histograms=nh, adjacency=p.adjacency)
    if p.sensitivity_override is not None:
        sens = p.sensitivity_override
    elif p.accounting == "classic":
        sens = classic_delta(q, contrastive=nh == 2)
    else:
        sens = l2
    sigma = calibrate_sigma(
        p.epsilon, p.delta, num_rounds=T, l2_sensitivity=sens, method=p.accounting
    )
    _check_true_epsilon(p, sigma, l2, T, sens)
    return PrivacyPlan(
        epsilon=p.epsilon,
        delta=p.delta,
        adjacency=p.adjacency,
        accounting=p.accounting,
        sensitivity=float(sens),
        l2_sensitivity=float(l2),
        sigma=float(sigma),
        rounds=T,
        num_parties=cfg.data.num_parties,
        releases=tuple(cfg.voting.release),
        noise=p.noise,
    )


def _check_true_epsilon(p, sigma: float, l2: float, rounds: int, sens: float) -> None:
    """Refuses a calibration whose epsilon at the derived sensitivity exceeds the target.

    RDP calibration for a sensitivity >= the derived one is within budget by construction;
    the original's formula ("classic") is not: its Delta can be below the derived L2
    sensitivity (replace-one with Q = 1: Delta 1, L2 sqrt(2)), and its bound is proved for
    epsilon < 1 only.
    """
    if sigma == 0 or p.accounting != "classic":
        return  # RDP for a sensitivity >= the derived one is within budget by construction
    true = epsilon_of([sigma / l2] * rounds, p.delta, method="rdp")
    if true > p.epsilon * (1.0 + 1e-9):
        raise ConfigError(
            f"privacy.accounting: {p.accounting!r} calibrates sigma = {sigma:.6g} for "
            f"sensitivity {sens:.6g}, but the release's derived L2 sensitivity is {l2:.6g}: "
            f"its T = {rounds} releases spend epsilon = {true:.4g} > the target "
            f"{p.epsilon:g}; use privacy.accounting='rdp' (calibrated for the derived "
            "sensitivity) or a target this formula meets"
        )
