"""The run's privacy ledger as a JSON-ready dict (what `privacy.json` holds).

The ledger lives inside the checkpoint state, so "round t's votes were released" and "the
stage is done" are committed by one atomic file replace. Recording is idempotent per
(round, what): a stage re-run after a crash re-records the same release (drawn with the same
noise key, hence identical), which does not count twice. The accounting itself is helper A's
`wasp_jax.privacy.PrivacyLedger`, stored as its JSON under "accountant"; nothing here does
DP math.
"""

from __future__ import annotations

import json
import math
from typing import Any

from wasp_jax.config import WaspConfig


def new_ledger(plan, cfg: WaspConfig) -> dict[str, Any]:
    """An empty ledger for a run (`plan` is a `methods.PrivacyPlan` or None)."""
    base = {
        "method": cfg.method,
        "private_data_used": plan is not None,
        "epsilon": cfg.privacy.epsilon if plan is not None else 0.0,
        "delta": cfg.privacy.delta if plan is not None else 0.0,
        "adjacency": cfg.privacy.adjacency,
        "accounting": cfg.privacy.accounting,
        "sigma": None,
        "sensitivity": None,
        "rounds": cfg.generation.rounds,
        "num_parties": cfg.data.num_parties,
        "num_histograms": cfg.num_histograms,
        "releases": [],
        "epsilon_spent": 0.0,
    }
    if plan is None:
        base["accounting"] = None
        base["rounds"] = 0
        base["note"] = (
            f"method {cfg.method!r} reads no private data: no privacy is spent and the "
            "output carries no DP guarantee about any private set (none was used)."
        )
    else:
        base.update(sigma=plan.sigma, sensitivity=plan.sensitivity)
        base["l2_sensitivity"] = plan.l2_sensitivity
        base["accountant"] = {
            "epsilon": "inf" if math.isinf(plan.epsilon) else plan.epsilon,
            "delta": plan.delta,
            "adjacency": plan.adjacency,
            "method": "rdp" if plan.accounting == "rdp" else "pld",
            "releases": [],
        }
        if plan.num_parties > 1:
            base["note"] = (
                f"{plan.num_parties} parties each add noise sigma/sqrt(L) to their own "
                "histograms and the server sums them; the guarantee holds for the sum and "
                "assumes secure aggregation (or a trusted server)."
            )
    return base


def _accountant(ledger: dict[str, Any]):
    from wasp_jax.privacy import PrivacyLedger

    return PrivacyLedger.from_json(json.dumps(ledger["accountant"]))


def record(ledger: dict[str, Any], round_: int, plan) -> None:
    """Records round `round_`'s release of the noisy histograms before it is used.

    Idempotent per (round, what) (helper A's `PrivacyLedger.record`); refuses a release that
    would exceed the budget (`PrivacyBudgetExceededError`). The epsilon spent is computed here,
    once per release (PLD accounting takes about a second), and stored with the ledger:
    by dp_accounting (PLD, or RDP with accounting="rdp") for the recorded sensitivity; for
    accounting="classic" that is the original's Delta, so `epsilon_spent_l2` adds the value
    for the exact L2 sensitivity.
    """
    acc = _accountant(ledger)
    n_before = len(acc.releases)
    acc.record(int(round_), "+".join(plan.releases), sigma=plan.sigma, sensitivity=plan.sensitivity)
    if len(acc.releases) == n_before:
        return  # already recorded (a resumed stage): nothing new is spent
    ledger["accountant"] = json.loads(acc.to_json())
    ledger["releases"] = [
        {
            "round": r.round,
            "what": r.what.split("+"),
            "sigma": r.sigma,
            "sensitivity": r.sensitivity,
            "adjacency": r.adjacency,
        }
        for r in acc.releases
    ]
    ledger["epsilon_spent"] = float(acc.epsilon_spent())
    if ledger["accounting"] == "classic":
        from wasp_jax.privacy import epsilon_of

        zs = [r.sigma / ledger["l2_sensitivity"] for r in acc.releases]
        ledger["epsilon_spent_l2"] = float(epsilon_of(zs, ledger["delta"], method="pld"))


def report(ledger: dict[str, Any]) -> dict[str, Any]:
    """The ledger for privacy.json: the plan, every release and the epsilon spent so far."""
    out = {k: _finite(v) for k, v in ledger.items() if k != "accountant"}
    out["rounds_released"] = len(ledger["releases"])
    return out


def _finite(v: Any) -> Any:
    """JSON has no infinity: epsilon = inf (no noise) is written as the string "inf"."""
    return "inf" if isinstance(v, float) and math.isinf(v) else v
