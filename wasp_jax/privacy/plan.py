"""The privacy plan: the one place a run's sigma, sensitivity and epsilon are decided.

`plan_releases(cfg, request)` resolves what a method releases (a `ReleaseRequest`: its release
kinds, Q, the histograms, T rounds) under the configured budget, adjacency and data parties L
into a frozen `PrivacyPlan`. One kind takes the whole budget (WASP's per-sample votes, with
"rdp" or "classic" accounting and an optional sensitivity override); several kinds split it
by their shares (RDP, one party, the derived sensitivities; `wasp_jax.privacy.composition`).
The vote
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
from wasp_jax.privacy.composition import calibrate_split
from wasp_jax.privacy.release_kinds import KINDS, kind_sensitivity
from wasp_jax.privacy.sensitivity import classic_delta


@dataclasses.dataclass(frozen=True)
class ReleaseRequest:
    """What a method releases about the private data: each kind once per round.

    Attributes:
      kinds: registered release kinds (`wasp_jax.privacy.release_kinds.KINDS`).
      rounds: T, the number of rounds that release them.
      q: votes per private record and histogram.
      histograms: the vote histograms counted ("nearest", "farthest").
      num_plms: K (kinds measured per PLM).
      shares: {kind: share of the budget} when several kinds split it (sum 1); None when one
        kind takes it all.
    """

    kinds: tuple[str, ...]
    rounds: int
    q: int
    histograms: tuple[str, ...]
    num_plms: int = 1
    shares: dict[str, float] | None = None

    def sensitivity(self, kind: str, adjacency: str) -> float:
        return kind_sensitivity(
            kind,
            q=self.q,
            num_histograms=len(self.histograms),
            num_plms=self.num_plms,
            adjacency=adjacency,
        )


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


def plan_releases(cfg: WaspConfig, request: ReleaseRequest | None) -> PrivacyPlan | None:
    """Sensitivity and sigma for what `request` releases (None: nothing private is released).

    One kind: "rdp" calibrates for its exact L2 sensitivity under the chosen adjacency with
    dp_accounting over T Gaussian releases; "classic" uses the original's Delta and formula
    (docs/method.md §6.5; sigma = 9.6896 at the paper's defaults). Several kinds: one RDP
    budget split by their shares (`split_plan`).

    Raises:
      ConfigError: a kind that is not registered, or a calibration that would spend more
        epsilon than the target.
    """
    if request is None:
        return None
    unknown = [k for k in request.kinds if k not in KINDS]
    if unknown or not request.kinds:
        raise ConfigError(f"release kinds {unknown or '()'} are not registered: {tuple(KINDS)}")
    if request.shares is not None:
        return split_plan(cfg, request)
    if len(request.kinds) != 1:
        raise ConfigError(f"release kinds {request.kinds} need budget shares (one per kind)")
    p, q, T = cfg.privacy, request.q, request.rounds
    nh, kind = len(request.histograms), request.kinds[0]
    if kind != "per_sample" and (
        p.accounting == "classic" or p.sensitivity_override is not None or cfg.data.num_parties > 1
    ):
        raise ConfigError(
            f"the {kind!r} release is accounted with RDP, for one data party and its derived "
            "sensitivity: set privacy.accounting=rdp, no sensitivity override and "
            "data.num_parties=1"
        )
    l2 = request.sensitivity(kind, p.adjacency)
    if p.sensitivity_override is not None:
        sens = p.sensitivity_override
    elif p.accounting == "classic":
        sens = classic_delta(q, contrastive=nh == 2)
    else:
        sens = l2
    sigma = calibrate_sigma(
        p.epsilon, p.delta, num_rounds=T, l2_sensitivity=sens, accountant=p.accounting
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
        # the vote histograms of a per-sample release; otherwise the kind itself
        releases=tuple(request.histograms) if kind == "per_sample" else request.kinds,
        noise=p.noise,
    )


def split_plan(cfg: WaspConfig, request: ReleaseRequest) -> PrivacyPlan:
    """Several kinds, each released every round with its share of one RDP budget; each
    kind's sigma is its noise multiplier times its derived sensitivity."""
    p, T = cfg.privacy, request.rounds
    if p.accounting == "classic" or p.sensitivity_override is not None or cfg.data.num_parties > 1:
        raise ConfigError(
            f"releases of several kinds ({', '.join(request.kinds)}) are accounted with RDP, "
            "for one data party and the derived sensitivities: set privacy.accounting=rdp, no "
            "sensitivity override and data.num_parties=1"
        )
    shares = dict(request.shares)
    sens = {k: request.sensitivity(k, p.adjacency) for k in shares}
    split = calibrate_split(
        p.epsilon, p.delta, counts=dict.fromkeys(shares, T), fractions=shares, accountant="rdp"
    )
    kinds = tuple((k, float(split.sigma(k, sens[k])), float(sens[k])) for k in shares)
    first = kinds[0]
    return PrivacyPlan(
        epsilon=p.epsilon,
        delta=p.delta,
        adjacency=p.adjacency,
        accounting=p.accounting,
        sensitivity=first[2],
        l2_sensitivity=first[2],
        sigma=first[1],
        rounds=T,
        num_parties=1,
        releases=tuple(k for k, _, _ in kinds),
        kinds=kinds,
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
    true = epsilon_of([sigma / l2] * rounds, p.delta, accountant="rdp")
    if true > p.epsilon * (1.0 + 1e-9):
        raise ConfigError(
            f"privacy.accounting: {p.accounting!r} calibrates sigma = {sigma:.6g} for "
            f"sensitivity {sens:.6g}, but the release's derived L2 sensitivity is {l2:.6g}: "
            f"its T = {rounds} releases spend epsilon = {true:.4g} > the target "
            f"{p.epsilon:g}; use privacy.accounting='rdp' (calibrated for the derived "
            "sensitivity) or a target this formula meets"
        )
