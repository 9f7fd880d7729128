"""Aug-PE: one PLM rephrases the DP-voted nearest samples (Top-1 votes, no contrast).

Each round releases the noisy nearest-vote histogram only (q = 1); the top-voted samples of
each class are rephrased in a style drawn for the round (docs/method.md §4).
"""

from __future__ import annotations

from wasp_jax.config import WaspConfig
from wasp_jax.config.sections import _check
from wasp_jax.pipeline.methods.base import Method
from wasp_jax.pipeline.methods.registry import register_method
from wasp_jax.pipeline.methods.wasp import Wasp, check_override
from wasp_jax.pipeline.run.sizing import Need, selection_need
from wasp_jax.pipeline.stages.prompts import rephrase_round_prompts


class AugPE(Wasp):
    """Rephrasing of the DP-voted nearest samples by one PLM."""

    name = "aug_pe"
    summary = (
        "Aug-PE: one PLM, Top-1 nearest-neighbour votes (one histogram), Gaussian noise, "
        "rephrase variations of the most-voted samples."
    )
    one_plm = True

    def preset(self, d: dict) -> None:
        """The first PLM only, q = 1, only the nearest histogram, no contrast, no weighting."""
        gen, vote = d["generation"], d["voting"]
        gen.update(plms=gen["plms"][:1], contrastive=False, plm_weighting=False)
        vote.update(q=1, release=["nearest"])

    def check_config(self, cfg: WaspConfig) -> None:
        Method.check_config(self, cfg)
        vote = cfg.voting
        _check(vote.q == 1, "voting.q", "method 'aug_pe' uses q = 1 (see with_method)")
        _check(vote.release == ("nearest",), "voting.release", "aug_pe releases ('nearest',)")
        check_override(cfg, self.release_request(cfg))

    def first_vote_need(self, cfg: WaspConfig) -> Need | None:
        return selection_need(cfg, votes=True, pairs=False)

    def prompts(self, inputs, state, t) -> list[list[str]]:
        d = state.decisions[t]
        texts = state.population.texts
        return rephrase_round_prompts(inputs.task, texts, d.good, seed=inputs.cfg.seed, round_=t)


AUG_PE = register_method(AugPE())
