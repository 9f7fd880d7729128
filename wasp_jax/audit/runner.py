"""The empirical privacy audit: run a config's real releases many times, bound epsilon below.

For each release kind of one round of the config (``audit_data.releases``) and each requested
mechanism (``audit_bugs.MECHANISMS``: the real, secure release and the planted bugs), the
audit runs ``trials`` independent releases on a dataset D and as many on its neighbour D'
(one worst-case canary record apart under the config's adjacency), scores each output, and
reports the Clopper-Pearson lower bound of the best threshold test
(``wasp_jax.privacy.audit_stats.threshold_audit``) next to the epsilon the plan claims for
that one release. A secure release must stay at or below its claim; a planted bug should
exceed it. See docs/method.md §6.7.

Example::

    result, scores = audit(cfg, trials=10_000, mechanisms=("secure", "sigma_halved"))
    [(r["kind"], r["mechanism"], r["eps_lb"], r["epsilon_claimed"]) for r in result["releases"]]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from wasp_jax.audit.bugs import BUGS, MECHANISMS, Clean, applies, mechanism_sigma
from wasp_jax.audit.bugs import scores as mechanism_scores
from wasp_jax.audit.data import AuditedRelease, Neighbours, neighbours, releases
from wasp_jax.config import WaspConfig
from wasp_jax.errors import UsageError
from wasp_jax.privacy.audit_stats import release_epsilon, threshold_audit


def check_mechanisms(names: Sequence[str]) -> tuple[str, ...]:
    bad = [n for n in names if n not in MECHANISMS]
    if bad or not names:
        raise UsageError(f"unknown mechanism(s) {bad}; choose from {', '.join(MECHANISMS)}")
    return tuple(dict.fromkeys(names))


def audit_release(
    release: AuditedRelease,
    mechanism: str,
    *,
    trials: int,
    delta: float,
    blocks: int = 32,
    confidence: float = 0.95,
    select_fraction: float = 0.1,
    nb: Neighbours | None = None,
) -> tuple[dict, tuple]:
    """Audits one release under one mechanism: (row of the result, (scores D, scores D',
    bound)). ``nb``: the neighbours to use (default ``neighbours(release, blocks)``)."""
    nb = neighbours(release, blocks) if nb is None else nb
    clean = Clean(release, nb)
    claimed = release_epsilon(release.sigma, release.sensitivity, delta)
    t0 = time.perf_counter()
    on_d = mechanism_scores(mechanism, release, nb, clean, "d", trials)
    on_dp = mechanism_scores(mechanism, release, nb, clean, "d_prime", trials)
    bound = threshold_audit(
        on_d, on_dp, delta=delta, confidence=confidence, select_fraction=select_fraction
    )
    row = {
        "kind": release.kind,
        "mechanism": mechanism,
        "planted_bug": mechanism in BUGS,
        "sigma": mechanism_sigma(mechanism, release),
        "plan_sigma": release.sigma,
        "sensitivity": release.sensitivity,
        "derived_sensitivity": release.derived_sensitivity(),
        "canary_change": clean.norm,
        "epsilon_claimed": claimed,
        "trials": trials,
        "trials_per_call": 1 if mechanism == "float32" else nb.coords.shape[0],
        **bound.to_dict(),
        "exceeds_claim": bound.eps_lb > claimed,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return row, (on_d, on_dp, bound)


def audit(
    cfg: WaspConfig,
    *,
    trials: int,
    mechanisms: Sequence[str] = ("secure",),
    bug_trials: int | None = None,
    confidence: float = 0.95,
    select_fraction: float = 0.1,
    kinds: Sequence[str] | None = None,
    blocks: int = 32,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict, dict]:
    """Audits every release kind of ``cfg`` under each mechanism.

    Args:
      cfg: the run config (its plan gives sigma, sensitivity, adjacency and delta).
      trials: independent releases per dataset (D and D') for the secure mechanism.
      mechanisms: names from ``MECHANISMS``; "secure" is the config's own release.
      bug_trials: trials per dataset for the planted bugs (default ``trials``).
      confidence, select_fraction: see ``threshold_audit``.
      kinds: audit only these release kinds (default all of the round's).
      blocks: trials per call of the release function (``audit_data.neighbours``); 1 runs
        one call, with its own secret, per trial.
      progress: called with one line per finished audit.

    Returns:
      (result, scores): the JSON-able result, and {(kind, mechanism): (scores on D, on D',
      bound)} for plotting.
    """
    mechanisms = check_mechanisms(mechanisms)
    for name, n, low in (
        ("trials", trials, 20),
        ("bug trials", bug_trials or trials, 20),
        ("blocks", blocks, 1),
    ):
        if isinstance(n, bool) or not isinstance(n, int) or n < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {n!r}")
    plan_releases = _chosen(releases(cfg), kinds)
    p = cfg.privacy
    start = time.perf_counter()
    rows, kept, skipped = [], {}, []
    for rel in plan_releases:
        nb = neighbours(rel, blocks)
        for mech in mechanisms:
            if not applies(mech, rel):
                skipped.append(f"{rel.kind}/{mech}")
                continue
            n = trials if mech == "secure" else (bug_trials or trials)
            row, kept[(rel.kind, mech)] = audit_release(
                rel,
                mech,
                trials=n,
                delta=p.delta,
                confidence=confidence,
                select_fraction=select_fraction,
                nb=nb,
            )
            rows.append(row)
            if progress:
                progress(
                    f"{rel.kind:>12} {mech:<15} eps_lb {row['eps_lb']:6.3f}  claimed "
                    f"{row['epsilon_claimed']:6.3f}  ({n} trials per dataset, "
                    f"{row['seconds']:.0f} s)"
                )
    result = _result(cfg, rows, skipped, confidence, select_fraction)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result, kept


def _chosen(plan_releases: list, kinds: Sequence[str] | None) -> list:
    """The round's releases of the requested kinds (all without `kinds`)."""
    if not kinds:
        return plan_releases
    missing = sorted(set(kinds) - {r.kind for r in plan_releases})
    if missing:
        have = ", ".join(r.kind for r in plan_releases)
        raise UsageError(f"the config releases no {missing}; its kinds are {have}")
    return [r for r in plan_releases if r.kind in kinds]


def _result(cfg: WaspConfig, rows, skipped, confidence: float, select_fraction: float) -> dict:
    p = cfg.privacy
    return {
        "method": cfg.method,
        "epsilon_run": p.epsilon,
        "delta": p.delta,
        "rounds": cfg.generation.rounds,
        "adjacency": p.adjacency,
        "accounting": p.accounting,
        "q": cfg.voting.q,
        "confidence": confidence,
        "threshold_choice": (
            f"threshold and direction chosen on the first {select_fraction:g} of the trials "
            "(normal fits, the best predicted bound), the bound computed on the rest"
        ),
        "claim": "epsilon_claimed: RDP epsilon at delta of one release with the plan's sigma "
        "and sensitivity (the run's epsilon_run covers all its releases)",
        "releases": rows,
        "not_applicable": skipped,
        "violations": [
            f"{r['kind']}/{r['mechanism']}"
            for r in rows
            if not r["planted_bug"] and r["exceeds_claim"]
        ],
    }
