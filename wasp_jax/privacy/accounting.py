"""Composition and calibration of the Gaussian vote releases, with dp_accounting (host side).

* ``calibrate_sigma`` returns the noise std for T composed Gaussian releases: "rdp" (the
  default, valid for the discrete Gaussian releases of the project, docs/method.md §2.5) and
  "pld" (continuous Gaussians only) through dp_accounting, "classic" the original's
  sigma = Delta sqrt(2 ln(1.25/delta)) sqrt(T)/eps (with Delta from ``sensitivity.classic_delta``).
* ``epsilon_of`` is the epsilon at delta of composed releases with given noise multipliers.
  dp_accounting is always run in add/remove form; replace-one is folded into the sensitivity.
* ``PrivacyLedger`` records every release, reports epsilon spent, refuses an over-budget release
  and round-trips through JSON, idempotently per (round, what).

See docs/method.md §6.4. Example::

    sens = l2_sensitivity(8)                                     # 1.63298 (2 histograms)
    sigma = calibrate_sigma(4.0, 1e-5, num_rounds=4, l2_sensitivity=sens)   # ~3.781
    ledger = PrivacyLedger(epsilon=4.0, delta=1e-5)
    ledger.record(0, "votes", sigma=sigma, sensitivity=sens)
"""

import dataclasses
import enum
import functools
import json
import math
from collections import Counter

import dp_accounting
import numpy as np
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import stats

from wasp_jax.config import ADJACENCIES
from wasp_jax.privacy.sensitivity import check_choice as _check_choice
from wasp_jax.privacy.sensitivity import check_int as _check_int


class Accountant(enum.StrEnum):
    """How noise is calibrated and epsilon composed ("pld" is for continuous Gaussian noise
    only; "classic" is the original's closed-form calibration, never a composition)."""

    PLD = "pld"
    RDP = "rdp"
    CLASSIC = "classic"


#: Every accountant ``calibrate_sigma`` knows, by value.
ACCOUNTANTS = tuple(a.value for a in Accountant)
#: The accountants that compose epsilon over releases.
COMPOSING = (Accountant.PLD.value, Accountant.RDP.value)


def _as_accountant(value, allowed=ACCOUNTANTS) -> Accountant:
    """`value` ("rdp", Accountant.RDP, ...) as an `Accountant`, refused outside `allowed`."""
    value = value.value if isinstance(value, Accountant) else value
    _check_choice("accountant", value, allowed)
    return Accountant(value)


class PrivacyBudgetExceededError(ValueError):
    """A release would spend more epsilon than the ledger's budget."""


def _check_epsilon(epsilon) -> float:
    if not isinstance(epsilon, int | float | np.floating) or math.isnan(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be > 0 (math.inf for no privacy), got {epsilon!r}")
    return float(epsilon)


def _check_delta(delta) -> float:
    if not isinstance(delta, int | float | np.floating) or not 0 < delta < 1:
        raise ValueError(f"delta must be in the open interval (0, 1), got {delta!r}")
    return float(delta)


def _check_nonneg(name: str, value, *, positive: bool = False) -> float:
    bad = not isinstance(value, int | float | np.floating) or not math.isfinite(value)
    if bad or value < 0 or (positive and value == 0):
        rng = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {rng}, got {value!r}")
    return float(value)


def _event(noise_multipliers) -> dp_accounting.DpEvent:
    counts = Counter(float(z) for z in noise_multipliers)
    events = [
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.GaussianDpEvent(z) if z > 0 else dp_accounting.NonPrivateDpEvent(), c
        )
        for z, c in sorted(counts.items())
    ]
    return dp_accounting.ComposedDpEvent(events)


def _composer(accountant: Accountant):
    if accountant is Accountant.PLD:
        return pld_privacy_accountant.PLDAccountant()
    return rdp_privacy_accountant.RdpAccountant()


# Below this sigma/sensitivity the PLD grid of dp_accounting grows to many GiB; composed
# Gaussians are then accounted with the exact mu-GDP formula, which PLD converges to.
_PLD_MIN_NOISE = 0.3


def _gdp_delta(epsilon: float, mu: float) -> float:
    """delta(epsilon) of mu-GDP (exact for composed Gaussians); e^eps taken in log space."""
    second = math.exp(epsilon + stats.norm.logcdf(-epsilon / mu - mu / 2))
    return float(stats.norm.cdf(-epsilon / mu + mu / 2) - second)


def _gdp_epsilon(mu: float, delta: float) -> float:
    lo, hi = 0.0, 1.0
    while _gdp_delta(hi, mu) > delta:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if _gdp_delta(mid, mu) <= delta else (mid, hi)
    return hi


def epsilon_of(noise_multipliers, delta: float, *, accountant: str = "rdp") -> float:
    """Epsilon at ``delta`` of composed Gaussian releases with these sigma/sensitivity ratios."""
    accountant = _as_accountant(accountant, COMPOSING)
    delta = _check_delta(delta)
    zs = list(noise_multipliers)
    if not zs:
        return 0.0
    if any(z <= 0 for z in zs):
        return math.inf
    if accountant is Accountant.PLD and min(zs) < _PLD_MIN_NOISE:
        return _gdp_epsilon(math.sqrt(sum(1.0 / z**2 for z in zs)), delta)
    return float(_composer(accountant).compose(_event(zs)).get_epsilon(delta))


def _gdp_noise_multiplier(epsilon: float, delta: float, num_rounds: int) -> float:
    """Exact noise multiplier of T composed Gaussians (mu-GDP), on the safe side."""
    lo, hi = 1e-6, 1.0
    while _gdp_delta(epsilon, hi) < delta:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _gdp_delta(epsilon, mid) < delta else (lo, mid)
    return math.sqrt(num_rounds) / lo


@functools.lru_cache(maxsize=256)
def _noise_multiplier(
    epsilon: float, delta: float, num_rounds: int, accountant: Accountant
) -> float:
    """sigma / sensitivity for T composed Gaussians whose dp_accounting epsilon is <= target."""
    make_event = lambda z: dp_accounting.SelfComposedDpEvent(
        dp_accounting.GaussianDpEvent(z), num_rounds
    )
    eps_of = lambda z: _composer(accountant).compose(make_event(z)).get_epsilon(delta)
    guess = _gdp_noise_multiplier(epsilon, delta, num_rounds)
    if accountant is Accountant.PLD and guess < _PLD_MIN_NOISE:
        return guess
    if accountant is Accountant.PLD:
        # PLD of a Gaussian is near exact, so the closed-form GDP value is within ~1e-12 of the
        # answer; each PLD evaluation costs seconds, so only nudge it until dp_accounting agrees.
        z, step = guess, 1e-9
    else:
        z = dp_accounting.calibrate_dp_mechanism(
            lambda: _composer(accountant),
            make_event,
            epsilon,
            delta,
            bracket_interval=dp_accounting.LowerEndpointAndGuess(guess * 0.5, guess * 1.2),
            tol=guess * 1e-6,
        )
        step = 1e-6
    while eps_of(z) > epsilon:
        z *= 1.0 + step
        step *= 10.0
    return float(z)


def calibrate_sigma(
    epsilon: float,
    delta: float,
    *,
    num_rounds: int,
    l2_sensitivity: float,
    accountant: str = "rdp",
) -> float:
    """Gaussian noise std so that ``num_rounds`` releases are (epsilon, delta)-DP overall.

    Args:
      epsilon: total budget, > 0; ``math.inf`` returns 0.0 (no noise).
      delta: total delta in (0, 1).
      num_rounds: T, the number of releases composed, >= 1.
      l2_sensitivity: L2 sensitivity of one release (for "classic": the original's Delta,
        see ``classic_delta``), > 0.
      accountant: "rdp" (dp_accounting's Renyi accountant: the one that covers the project's
        discrete Gaussian releases), "pld" (tighter, for continuous Gaussian noise only), or
        "classic" (the original's
        Delta sqrt(2 ln(1.25/delta)) sqrt(T) / epsilon).

    Returns:
      sigma, the std of the noise added to every released entry.
    """
    epsilon = _check_epsilon(epsilon)
    delta = _check_delta(delta)
    num_rounds = _check_int("num_rounds", num_rounds, 1)
    sens = _check_nonneg("l2_sensitivity", l2_sensitivity, positive=True)
    accountant = _as_accountant(accountant)
    if math.isinf(epsilon):
        return 0.0
    if accountant is Accountant.CLASSIC:
        return sens * math.sqrt(2.0 * math.log(1.25 / delta)) * math.sqrt(num_rounds) / epsilon
    return sens * _noise_multiplier(epsilon, delta, num_rounds, accountant)


@dataclasses.dataclass(frozen=True)
class Release:
    """One noised release: round, what was released, noise std and L2 sensitivity."""

    round: int
    what: str
    sigma: float
    sensitivity: float
    adjacency: str

    @property
    def noise_multiplier(self) -> float:
        return self.sigma / self.sensitivity


@dataclasses.dataclass
class PrivacyLedger:
    """Every DP release of a run and the epsilon they spend together.

    Attributes:
      epsilon: total budget (math.inf: unlimited).
      delta: total delta.
      adjacency: the neighbouring relation all releases were calibrated for.
      accountant: the accountant of ``epsilon_spent`` ("pld" or "rdp").
      releases: recorded releases, in order.
    """

    epsilon: float
    delta: float
    adjacency: str = "add_remove"
    accountant: str = "pld"
    releases: list[Release] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.epsilon = _check_epsilon(self.epsilon)
        self.delta = _check_delta(self.delta)
        _check_choice("adjacency", self.adjacency, ADJACENCIES)
        _as_accountant(self.accountant, COMPOSING)

    def epsilon_spent(self, extra: tuple[Release, ...] = ()) -> float:
        """Epsilon at ``delta`` of all recorded releases (plus ``extra``), via dp_accounting."""
        zs = [r.noise_multiplier for r in (*self.releases, *extra)]
        return epsilon_of(zs, self.delta, accountant=self.accountant)

    def find(self, round_idx: int, what: str) -> Release | None:
        """The recorded release for (round_idx, what), or None."""
        return next((r for r in self.releases if (r.round, r.what) == (round_idx, what)), None)

    def record(
        self, round_idx: int, what: str, *, sigma: float, sensitivity: float, adjacency=None
    ) -> Release:
        """Records a release before it is made; refuses one that would exceed the budget.

        Recording the same (round, what) again with the same parameters is a no-op (a resumed
        run never spends twice); with different parameters it is an error.

        Raises:
          PrivacyBudgetExceededError: the release would take epsilon spent above the budget.
          ValueError: invalid arguments, or a conflicting earlier record.
        """
        adjacency = self.adjacency if adjacency is None else adjacency
        if adjacency != self.adjacency:
            raise ValueError(
                f"adjacency {adjacency!r} differs from the ledger's {self.adjacency!r}"
            )
        rel = Release(
            round=_check_int("round_idx", round_idx, 0),
            what=str(what),
            sigma=_check_nonneg("sigma", sigma),
            sensitivity=_check_nonneg("sensitivity", sensitivity, positive=True),
            adjacency=adjacency,
        )
        old = self.find(rel.round, rel.what)
        if old is not None:
            if old != rel:
                raise ValueError(f"release ({round_idx}, {what!r}) already recorded as {old}")
            return old
        spent = self.epsilon_spent((rel,))
        if spent > self.epsilon:
            raise PrivacyBudgetExceededError(
                f"release ({round_idx}, {what!r}) with sigma={rel.sigma:.6g} would bring "
                f"epsilon to {spent:.6g} > budget {self.epsilon:.6g}; recalibrate sigma or stop"
            )
        self.releases.append(rel)
        return rel

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["epsilon"] = "inf" if math.isinf(self.epsilon) else self.epsilon
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "PrivacyLedger":
        d = json.loads(text)
        releases = [Release(**r) for r in d.pop("releases")]
        d["epsilon"] = float(d["epsilon"])
        return cls(**d, releases=releases)
