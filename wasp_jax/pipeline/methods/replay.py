"""Replay: WASP's DP voting and selection over pre-generated candidate pools.

Candidates are read from `replay.pools` (one JSONL file per PLM) in file order instead of
generated: round 0 takes the first rows of each pool, and round t takes each pool's next
unused rows by the budgets the noisy votes gave its PLM. The pools are public; the votes
are WASP's (release kind ``per_sample``). Replay is also the candidate source of WASP+ with
pools (`wasp_jax.pipeline.methods.wasp_plus`).
"""

from __future__ import annotations

from wasp_jax.config import WaspConfig
from wasp_jax.config.sections import _check
from wasp_jax.pipeline.methods import common
from wasp_jax.pipeline.methods.registry import register_method
from wasp_jax.pipeline.methods.wasp import Wasp
from wasp_jax.pipeline.run.sizing import Need


class Replay(Wasp):
    """WASP's votes over candidates read from pools."""

    name = "replay"
    summary = (
        "Replay: WASP's DP voting and selection over pre-generated candidate pools read from "
        "files; no live generation."
    )
    sections = ("data", "privacy", "voting", "selection", "generation", "embedder", "replay")

    def check_config(self, cfg: WaspConfig) -> None:
        _check(len(cfg.replay.pools) >= 1, "replay.pools", "method 'replay' needs pool files")
        super().check_config(cfg)

    def replays(self, cfg: WaspConfig) -> bool:
        return True

    def first_vote_need(self, cfg: WaspConfig) -> Need | None:
        return None  # the pools' class counts are checked when they are read

    def initial(self, inputs, state, k, budget):
        quotas = common.quotas_of(inputs, budget, k)
        return common.replayed(inputs, state, k, quotas, 0)

    def draw(self, inputs, state, t, k):
        quotas = common.quotas_of(inputs, state.decisions[t].budgets[k], t + k)
        return common.replayed(inputs, state, k, quotas, t)


REPLAY = register_method(Replay())
