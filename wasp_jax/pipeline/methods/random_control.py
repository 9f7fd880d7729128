"""Random control: WASP's rounds and prompts with random examples instead of DP votes.

It reads no private data: each round picks S good and S bad examples per class at random
and splits the budget evenly, so a comparison with WASP isolates what the votes add.
"""

from __future__ import annotations

import numpy as np

from wasp_jax.config import WaspConfig
from wasp_jax.pipeline.methods import common
from wasp_jax.pipeline.methods.base import Method
from wasp_jax.pipeline.methods.registry import register_method
from wasp_jax.pipeline.methods.wasp import Wasp
from wasp_jax.pipeline.run.results import Decided
from wasp_jax.pipeline.run.sizing import Need, selection_need
from wasp_jax.pipeline.stages import selection


class RandomControl(Wasp):
    """WASP without the private data: random same-class examples, even budgets."""

    name = "random_control"
    summary = (
        "Random in-class control: WASP's prompts built from random same-class synthetic "
        "samples, with no votes; no private data is used."
    )
    sections = ("generation", "selection", "voting")
    reads_private_data = False

    def check_config(self, cfg: WaspConfig) -> None:
        Method.check_config(self, cfg)

    def first_vote_need(self, cfg: WaspConfig) -> Need | None:
        return selection_need(cfg, votes=False, pairs=cfg.generation.contrastive)

    def release_request(self, cfg: WaspConfig) -> None:
        return None

    def decide(self, inputs, state, t) -> Decided:
        cfg, pop = inputs.cfg, state.population
        K, C = len(inputs.plm_names), inputs.task.num_classes
        mask = selection.train_mask(cfg.voting, cfg.seed, len(pop), t)
        good, bad = selection.random_good_bad(cfg.seed, cfg.selection.s, pop.labels, mask, C, t)
        total = cfg.generation.round_increment(t - 1)
        weights, budgets = selection.plm_allocation(np.zeros(K), total, tau=1.0, weighting=False)
        return Decided(t, common.decision(t, good, bad, weights, budgets, None))


RANDOM_CONTROL = register_method(RandomControl())
