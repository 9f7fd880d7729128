"""The privacy plan of a WASP+ run: one budget split over its release kinds.

Every round releases each configured kind once (usefulness, per-cluster nearest + farthest
totals), so over T rounds kind i is released T times with the
share ``cfg.plus.fractions()[i]`` of the budget (`wasp_jax.privacy.composition`). Each kind's
sigma is its noise multiplier times its sensitivity (`release_kinds.kind_sensitivity`).
"""

from __future__ import annotations

import pathlib

from wasp_jax.config import WaspConfig
from wasp_jax.errors import ConfigError
from wasp_jax.privacy.composition import calibrate_split
from wasp_jax.privacy.release_kinds import kind_sensitivity

#: The histograms a WASP+ per-cluster release sums (good and bad examples).
PLUS_HISTOGRAMS = ("nearest", "farthest")


def num_plms(cfg: WaspConfig) -> int:
    pools = [pathlib.Path(p).stem for p in cfg.replay.pools]
    return len(pools) if cfg.is_replay else len(cfg.generation.plms)


def plus_kinds(cfg: WaspConfig) -> tuple[tuple[str, float, float], ...]:
    """(kind, sigma, sensitivity) of every kind a WASP+ round releases, usefulness first."""
    p, q, T = cfg.privacy, cfg.voting.q, cfg.generation.rounds
    if p.accounting == "classic" or p.sensitivity_override is not None or cfg.data.num_parties > 1:
        raise ConfigError(
            "method 'wasp_plus' is accounted with RDP, for one data party and the derived "
            "sensitivities: set privacy.accounting=rdp, no sensitivity override and "
            "data.num_parties=1"
        )
    fractions = cfg.plus.fractions()
    sens = {
        k: kind_sensitivity(
            k, q=q, num_histograms=len(PLUS_HISTOGRAMS), num_plms=num_plms(cfg),
            adjacency=p.adjacency,
        )
        for k in fractions
    }  # fmt: skip
    split = calibrate_split(
        p.epsilon, p.delta, counts=dict.fromkeys(fractions, T), fractions=fractions,
        method="rdp",
    )  # fmt: skip
    return tuple((k, float(split.sigma(k, sens[k])), float(sens[k])) for k in fractions)
