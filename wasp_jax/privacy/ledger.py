"""The run's privacy ledger: every release of a run and the epsilon it has spent.

`RunLedger` is a typed record kept in the run state and serialised only when the state is
checkpointed (`to_state` / `from_state`) or written as `privacy.json` (`report`). It lives
inside the checkpoint, so "round t's votes were released" and "the stage is done" are
committed by one atomic file replace. Recording is idempotent per round: a stage re-run after
a crash re-records the same release (drawn with the same noise key, hence identical), which
does not count twice. The DP arithmetic is `wasp_jax.privacy.accounting`'s; every number
here comes from the run's `PrivacyPlan`. See docs/method.md §6.

Besides the plan's releases, a run may make releases of its own budget outside the plan (the
evaluation's DP classifiers, `eval.dp_classifiers`): `record_extra` lists each once, with the
(epsilon, delta) it was calibrated to, and `epsilon_total` / `delta_total` add them to the
run's spend by basic composition (epsilons add, deltas add).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from wasp_jax.privacy.accounting import PrivacyLedger, Release, epsilon_of
from wasp_jax.privacy.noise_source import SEEDED_NOTE
from wasp_jax.privacy.plan import PrivacyPlan
from wasp_jax.privacy.release_kinds import KINDS

#: How every release is accounted (written into privacy.json).
ACCOUNTANT = (
    "discrete Gaussian noise on an integer lattice (Canonne, Kamath and Steinke 2020), "
    "each release bounded by the Renyi curve of a Gaussian of the same noise multiplier "
    "(their multivariate bound; its slack is below 1e-1000 at >= 64 lattice units of noise), "
    "composed with dp_accounting's RDP accountant; the sampler's total-variation error "
    "(< 2^-100 per coordinate) is far below delta"
)

#: How the extra releases add to the run's spend (written into privacy.json with them).
COMPOSITION = (
    "basic composition: epsilon_total is the run's epsilon_spent plus the epsilon of every "
    "extra release, delta_total the run's delta plus theirs; every output of the run "
    "(synthetic data and the extra releases' results together) is "
    "(epsilon_total, delta_total)-DP"
)


@dataclasses.dataclass
class RunLedger:
    """What a run has released, against its plan (None: the method reads no private data).

    Attributes:
      method: the run's method.
      plan: the privacy plan, or None when no private data is used.
      adjacency, num_parties, num_histograms, rounds: the release's shape, for the report
        (taken from the plan when there is one).
      accountant: the releases and their composition (None without a plan).
      epsilon_spent: epsilon of the recorded releases, computed once per release, always
        with the derived L2 sensitivity of each (under "classic" accounting and with a
        sensitivity override too, whatever sigma was calibrated for).
      extra: releases outside the plan, each a dict with name, what, epsilon, delta, sigma,
        sensitivity, adjacency and steps (see `record_extra`); spent in addition to the plan.
    """

    method: str
    plan: PrivacyPlan | None
    adjacency: str
    num_parties: int
    num_histograms: int
    rounds: int
    accountant: PrivacyLedger | None = None
    epsilon_spent: float = 0.0
    extra: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @classmethod
    def new(
        cls,
        plan: PrivacyPlan | None,
        *,
        method: str,
        adjacency: str,
        num_parties: int,
        num_histograms: int,
    ) -> RunLedger:
        """An empty ledger; without a plan the shape fields describe the configured run."""
        if plan is None:
            return cls(method, None, adjacency, num_parties, num_histograms, rounds=0)
        accountant = PrivacyLedger(
            epsilon=plan.epsilon,
            delta=plan.delta,
            adjacency=plan.adjacency,
            accountant="rdp",
        )
        return cls(
            method,
            plan,
            plan.adjacency,
            plan.num_parties,
            len(plan.releases),
            plan.rounds,
            accountant,
        )

    @property
    def releases(self) -> list[Release]:
        return [] if self.accountant is None else list(self.accountant.releases)

    def record(self, round_: int) -> None:
        """Records round `round_`'s release of the plan's noisy histograms before it is used.

        Idempotent per round; refuses a release that would exceed the budget
        (`PrivacyBudgetExceededError`). The epsilon spent is computed here, once per release
        (dp_accounting takes a fraction of a second).
        """
        plan, acc = self.plan, self.accountant
        if plan is None or acc is None:
            raise ValueError(f"method {self.method!r} has no privacy plan: it releases nothing")
        n_before = len(acc.releases)
        # the derived sensitivity, not the one sigma was calibrated for (classic's Delta, an
        # override): the epsilon spent is the true one
        items = plan.kinds or (("+".join(plan.releases), plan.sigma, plan.l2_sensitivity),)
        for what, sigma, sensitivity in items:  # WASP+: one release per kind
            acc.record(int(round_), what, sigma=sigma, sensitivity=sensitivity)
        if len(acc.releases) == n_before:
            return  # already recorded (a resumed stage): nothing new is spent
        self.epsilon_spent = float(acc.epsilon_spent())

    def record_extra(
        self,
        name: str,
        *,
        what: str,
        epsilon: float,
        delta: float,
        sigma: float,
        sensitivity: float,
        adjacency: str,
        steps: int,
    ) -> bool:
        """Records a release outside the plan (before it is used); True if it is new.

        Idempotent per name: a resumed stage re-records the same release, which does not
        count twice. ``epsilon`` and ``delta`` are what its ``steps`` noisy releases (each of
        std ``sigma`` at L2 ``sensitivity``) were calibrated to; they add to the run's.

        Raises:
          ValueError: no plan (the run reads no private data), a non-finite or non-positive
            epsilon or sigma, or a name recorded before with other numbers.
        """
        if self.plan is None:
            raise ValueError(f"method {self.method!r} reads no private data: nothing to release")
        if not (0 < epsilon < math.inf and sigma > 0):
            raise ValueError(
                f"release {name!r} needs a finite epsilon and noise, got "
                f"epsilon={epsilon!r}, sigma={sigma!r}"
            )
        entry = {
            "name": str(name),
            "what": str(what),
            "epsilon": float(epsilon),
            "delta": float(delta),
            "sigma": float(sigma),
            "sensitivity": float(sensitivity),
            "adjacency": str(adjacency),
            "steps": int(steps),
        }
        for old in self.extra:
            if old["name"] == entry["name"]:
                if old != entry:
                    raise ValueError(f"release {name!r} was recorded as {old}, now {entry}")
                return False
        self.extra.append(entry)
        return True

    @property
    def epsilon_total(self) -> float:
        """The run's epsilon spent plus every extra release's (basic composition)."""
        return float(self.epsilon_spent) + sum(e["epsilon"] for e in self.extra)

    @property
    def delta_total(self) -> float:
        """The run's delta (0 without a plan) plus every extra release's."""
        return (self.plan.delta if self.plan else 0.0) + sum(e["delta"] for e in self.extra)

    # -- serialisation ------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """privacy.json: the plan, every release and the epsilon spent so far."""
        plan = self.plan
        out: dict[str, Any] = {
            "method": self.method,
            "private_data_used": plan is not None,
            # False for epsilon = inf (sigma 0: private data shaped the output unnoised) and
            # for seeded noise (anyone who knows the seed can subtract it)
            "private": plan is None or plan.private,
            "noise": plan.noise if plan else None,
            "epsilon": plan.epsilon if plan else 0.0,
            "delta": plan.delta if plan else 0.0,
            "adjacency": self.adjacency,
            "accounting": plan.accounting if plan else None,
            "accountant": ACCOUNTANT if plan else None,
            "sigma": plan.sigma if plan else None,
            "sensitivity": plan.l2_sensitivity if plan else None,
            "rounds": self.rounds,
            "num_parties": self.num_parties,
            "num_histograms": self.num_histograms,
            "releases": [
                {
                    "round": r.round,
                    "what": r.what.split("+"),
                    "sigma": r.sigma,
                    "sensitivity": r.sensitivity,
                    "adjacency": r.adjacency,
                }
                | ({"measures": KINDS[r.what].measures} if r.what in KINDS else {})
                for r in self.releases
            ],
            "epsilon_spent": self.epsilon_spent,
        }
        if plan is None:
            out["note"] = (
                f"method {self.method!r} reads no private data: no privacy is spent and the "
                "output carries no DP guarantee about any private set (none was used)."
            )
        else:
            out["l2_sensitivity"] = plan.l2_sensitivity
            if plan.sensitivity != plan.l2_sensitivity:  # classic's Delta or an override
                out["calibration_sensitivity"] = plan.sensitivity
            notes = []
            if plan.sigma == 0:
                notes.append(
                    "epsilon = inf: the votes got no noise, so this output is NOT differentially "
                    "private; the private records shaped it without any formal protection."
                )
            elif plan.noise == "seeded":
                notes.append(
                    f"{SEEDED_NOTE}: privacy.noise = 'seeded' drew the noise from the public "
                    "seed, so anyone who knows it can subtract the noise; this output is NOT "
                    "differentially private (use it for tests and replication only)."
                )
            if plan.sigma > 0 and plan.num_parties > 1:
                notes.append(
                    f"{plan.num_parties} parties each add noise sigma/sqrt(L) to their own "
                    "histograms and the server sums them; the guarantee holds for the sum and "
                    "assumes secure aggregation (or a trusted server)."
                )
            if notes:
                out["note"] = " ".join(notes)
        out["rounds_released"] = len({r["round"] for r in out["releases"]})
        out.update(self._extra_report())
        if plan is not None and plan.kinds:  # WASP+: several kinds of release per round
            out["kinds"] = [
                {
                    "kind": k,
                    "sigma": sig,
                    "sensitivity": sens,
                    "releases": plan.rounds,
                    # this kind's T releases alone; together they compose to epsilon
                    "epsilon": _finite(_kind_epsilon(sig / sens, plan.rounds, plan.delta)),
                    "measures": KINDS[k].measures,
                }
                for k, sig, sens in plan.kinds
            ]
        return {k: _finite(v) for k, v in out.items()}

    def _extra_report(self) -> dict[str, Any]:
        """privacy.json's releases outside the plan and the totals ({} without any)."""
        if not self.extra:
            return {}
        return {
            "extra_releases": [dict(e) for e in self.extra],
            "epsilon_total": self.epsilon_total,
            "delta_total": self.delta_total,
            "composition": COMPOSITION,
        }

    def to_state(self) -> dict[str, Any]:
        d = {
            "method": self.method,
            "plan": None if self.plan is None else _finite_dict(self.plan.to_dict()),
            "adjacency": self.adjacency,
            "num_parties": self.num_parties,
            "num_histograms": self.num_histograms,
            "rounds": self.rounds,
            "releases": [dataclasses.asdict(r) for r in self.releases],
            "epsilon_spent": _finite(self.epsilon_spent),
            "extra": [dict(e) for e in self.extra],
        }
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> RunLedger:
        plan = None if d["plan"] is None else PrivacyPlan.from_dict(_float_dict(d["plan"]))
        led = cls.new(
            plan,
            method=d["method"],
            adjacency=d["adjacency"],
            num_parties=d["num_parties"],
            num_histograms=d["num_histograms"],
        )
        led.rounds = d["rounds"]
        if led.accountant is not None:
            led.accountant.releases.extend(Release(**r) for r in d["releases"])
        led.epsilon_spent = float(d["epsilon_spent"])
        led.extra = [dict(e) for e in d.get("extra", [])]  # absent in older states
        return led


@functools.lru_cache(maxsize=64)
def _kind_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Epsilon at delta of one release kind's T releases alone (RDP, as the ledger)."""
    return float(epsilon_of([noise_multiplier] * rounds, delta, accountant="rdp"))


def _finite(v: Any) -> Any:
    """JSON has no infinity: epsilon = inf (no noise) is written as the string "inf"."""
    return "inf" if isinstance(v, float) and math.isinf(v) else v


def _finite_dict(d: dict) -> dict:
    return {k: _finite(v) for k, v in d.items()}


def _float_dict(d: dict) -> dict:
    return {k: (math.inf if v == "inf" else v) for k, v in d.items()}
