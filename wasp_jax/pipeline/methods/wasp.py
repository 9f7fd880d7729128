"""WASP: Top-Q DP votes of the private set pick contrastive examples and weight the PLMs.

Each round releases the per-sample nearest (and farthest) vote histograms with Gaussian noise
(release kind ``per_sample``); the noisy votes select S good and S bad examples per class for
contrastive prompts and set every PLM's share of the next round's budget (docs/method.md §2).
"""

from __future__ import annotations

import logging

from wasp_jax.config import WaspConfig
from wasp_jax.config.sections import _check
from wasp_jax.pipeline.methods import common
from wasp_jax.pipeline.methods.base import Method
from wasp_jax.pipeline.methods.registry import register_method
from wasp_jax.pipeline.run.sizing import Need, selection_need
from wasp_jax.pipeline.stages.prompts import round_prompts
from wasp_jax.privacy.plan import ReleaseRequest

log = logging.getLogger("wasp_jax")


class Wasp(Method):
    """Contrastive prompts from DP-voted examples, and DP-weighted PLMs."""

    name = "wasp"
    summary = (
        "WASP: zero-shot start from several PLMs, then per round Top-Q nearest and farthest "
        "votes of the private samples over the synthetic pool, Gaussian noise, PLM weighting of "
        "the next budget and contrastive (bad/good) few-shot prompts built from the noisy votes."
    )
    sections = ("data", "privacy", "voting", "selection", "generation", "embedder")
    reads_private_data = True

    def check_config(self, cfg: WaspConfig) -> None:
        super().check_config(cfg)
        if cfg.generation.contrastive:
            _check(
                "farthest" in cfg.voting.release,
                "voting.release",
                "contrastive prompts need the 'farthest' histogram (or set contrastive=False)",
            )
        check_override(cfg, self.release_request(cfg))
        check_round_budget(cfg)

    def first_vote_need(self, cfg: WaspConfig) -> Need | None:
        pairs = cfg.generation.contrastive and "farthest" in cfg.voting.release
        return selection_need(cfg, votes=True, pairs=pairs)

    def release_request(self, cfg: WaspConfig) -> ReleaseRequest:
        return ReleaseRequest(
            kinds=("per_sample",),
            rounds=cfg.generation.rounds,
            q=cfg.voting.q,
            histograms=tuple(cfg.voting.release),
        )

    def initial(self, inputs, state, k, budget):
        return common.zero_shot(inputs, state, k, budget)

    def decide(self, inputs, state, t):
        return common.voted(inputs, state, t)

    def draw(self, inputs, state, t, k):
        """Round t for PLM k: its budget from prompts built on the round's selection."""
        d = state.decisions[t]
        quotas = common.quotas_of(inputs, d.budgets[k], t + k)
        prompts = self.prompts(inputs, state, t)
        log.info("round %d: %s generates %d samples", t, inputs.plm_names[k], d.budgets[k])
        return common.generated(inputs, state, k, lambda gen, c, key: prompts[c], quotas, t)

    def prompts(self, inputs, state, t) -> list[list[str]]:
        """The prompt variants of every class for round t (contrastive, §2.8)."""
        cfg, d = inputs.cfg, state.decisions[t]
        g = cfg.generation
        return round_prompts(
            inputs.task,
            state.population.texts,
            d.good,
            d.bad,
            seed=cfg.seed,
            round_=t,
            s=cfg.selection.s,
            contrastive=g.contrastive,
            num_variants=g.num_prompt_variants,
        )


def check_round_budget(cfg: WaspConfig) -> None:
    """Every round adds at least one sample."""
    gen = cfg.generation
    _check(
        gen.budget - gen.initial_size >= gen.rounds,
        "generation.budget",
        f"budget {gen.budget} leaves fewer than one new sample per round "
        f"(initial {gen.initial_size}, rounds {gen.rounds})",
    )


def check_override(cfg: WaspConfig, request: ReleaseRequest) -> None:
    """A sensitivity override below the derived L2 bound would understate epsilon."""
    p = cfg.privacy
    if p.sensitivity_override is None:
        return
    bound = request.sensitivity(request.kinds[0], p.adjacency)
    q, nh = request.q, len(request.histograms)
    _check(
        p.sensitivity_override >= bound,
        "privacy.sensitivity_override",
        f"{p.sensitivity_override!r} is below {bound!r}, the derived L2 sensitivity of "
        f"this release (q={q}, {nh} histogram(s), {p.adjacency}): noise calibrated for it "
        "would spend more epsilon than the run states; remove the override (the derived "
        f"value is used) or set it >= {bound!r}",
    )


WASP = register_method(Wasp())
