"""WASP-proto: one DP release of class prototypes steers every round.

Round 1 releases, once for the whole run, the per-class sums of the clipped private
embeddings (by default projected, centred and unit-normed, onto a 16-dimensional public
subspace fixed by the zero-shot start: ``proto.dims``) with discrete Gaussian noise (release
kind ``class_prototypes``, sensitivity 1 under add/remove, 2 under replace-one). Every round
then post-processes them: each candidate's margin (cosine to its own class's noisy prototype
minus the best other class's) picks the S best (good) and the S most confusable (bad)
examples of each class for contrastive prompts, and each PLM's mean margin sets its share of
the next budget. The whole budget goes to the one release; later rounds read it back and
spend nothing.

With ``proto.oversample = m > 1`` every PLM generates m candidates per row of its round budget
and keeps, per class, the rows of highest margin; ``proto.drop_other_class`` also drops rows
of negative margin (nearer another class's prototype). Both are post-processing of the one
release; the dropped candidates are counted in ``metrics.jsonl`` (``filtered``).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from wasp_jax.config import WaspConfig
from wasp_jax.config.sections import _check
from wasp_jax.pipeline.methods import common
from wasp_jax.pipeline.methods.base import Method
from wasp_jax.pipeline.methods.registry import register_method
from wasp_jax.pipeline.methods.wasp import Wasp, check_round_budget
from wasp_jax.pipeline.run import spread
from wasp_jax.pipeline.run.results import Decided, Drawn
from wasp_jax.pipeline.run.sizing import Need, selection_need
from wasp_jax.pipeline.stages import prototypes, selection, tuning
from wasp_jax.pipeline.stages.vote_plus import aggregate_and_noise
from wasp_jax.privacy.plan import ReleaseRequest

log = logging.getLogger("wasp_jax")

KIND = "class_prototypes"
#: The filter counts of the rows oversampling and the class check leave out.
NOT_TOP, OTHER_CLASS = "below_top_margin", "nearer_other_class"
#: The checkpointed public subspace of the prototypes (mean, then the directions).
SPACE = "prototype_space"


class WaspProto(Wasp):
    """Contrastive examples and PLM weights from one release of noisy class prototypes."""

    name = "wasp_proto"
    sections = (*Wasp.sections, "proto", "tune")
    summary = (
        "WASP-proto: one DP release of per-class prototypes (noisy sums of the clipped private "
        "embeddings); each round's good and most confusable examples and the PLM weights come "
        "from the candidates' margins to them."
    )

    def check_config(self, cfg: WaspConfig) -> None:
        Method.check_config(self, cfg)
        check_round_budget(cfg)
        n0, dims = cfg.generation.initial_size, cfg.proto.dims
        _check(
            dims < n0,
            "proto.dims",
            f"a {dims}-dimensional subspace needs more than {dims} zero-shot candidates, and "
            f"round 0 has {n0}; set proto.dims below {n0} (0 = the full space) or raise "
            "generation.budget",
        )

    def first_vote_need(self, cfg: WaspConfig) -> Need | None:
        return selection_need(cfg, votes=False, pairs=cfg.generation.contrastive)

    def release_request(self, cfg: WaspConfig) -> ReleaseRequest:
        return ReleaseRequest(
            kinds=(KIND,), rounds=1, q=cfg.voting.q, histograms=tuple(cfg.voting.release)
        )

    def releases_in_round(self, cfg: WaspConfig, t: int) -> bool:
        return t == 1

    def decide(self, inputs, state, t) -> Decided:
        cfg, pop = inputs.cfg, state.population
        K, C = len(inputs.plm_names), inputs.task.num_classes
        mask = selection.train_mask(cfg.voting, cfg.seed, len(pop), t)
        emb = common.embeddings(inputs, state)
        protos, space = self.prototypes(inputs, state, emb)
        margin = prototypes.margins(prototypes.project(emb, space), pop.labels, protos)
        good, bad = prototypes.good_bad(margin, pop.labels, mask, C, cfg.selection.s)
        scores = prototypes.plm_margin_scores(margin, pop.plm, mask, K)
        weights, budgets = common.allocation(inputs, t, scores)
        summary = prototypes.summary(margin, pop.labels, mask, C)
        return Decided(t, common.decision(t, good, bad, weights, budgets, summary), embeddings=emb)

    def draw(self, inputs, state, t, k) -> Drawn:
        """Round t for PLM k: with ``tune.enabled`` the PLM is first tuned on the previous
        round's preference pairs (`wasp_jax.pipeline.stages.tuning`); then as WASP's draw,
        or (oversampling, class check) m times the candidates, of which each class keeps its
        quota by margin to the prototypes."""
        record = self.tune(inputs, state, t, k) if inputs.cfg.tune.enabled else None
        drawn = self._draw(inputs, state, t, k)
        return dataclasses.replace(drawn, tuning=record) if record else drawn

    def tune(self, inputs, state, t, k) -> dict | None:
        """Tunes PLM k on the post-noise margins of the population so far."""
        pop = state.population
        emb = common.embeddings(inputs, state)
        protos, space = self.prototypes(inputs, state, emb)
        margin = prototypes.margins(prototypes.project(emb, space), pop.labels, protos)
        return tuning.before_round(inputs, state, t, k, margin)

    def baseline_draw(self, inputs, state, k, budget) -> Drawn:
        """The equal-size zero-shot rows, from PLM k's untuned weights."""
        draw = lambda: super(WaspProto, self).baseline_draw(inputs, state, k, budget)
        return tuning.untuned_draw(inputs, k, draw)

    def _draw(self, inputs, state, t, k) -> Drawn:
        pc = inputs.cfg.proto
        if pc.oversample == 1 and not pc.drop_other_class:
            return super().draw(inputs, state, t, k)
        d = state.decisions[t]
        quotas = common.quotas_of(inputs, d.budgets[k], t + k)
        wide = [q * pc.oversample for q in quotas]
        prompts = self.prompts(inputs, state, t)
        log.info(
            "round %d: %s generates %d candidates to keep %d by prototype margin",
            t,
            inputs.plm_names[k],
            sum(wide),
            sum(quotas),
        )
        drawn = common.generated(inputs, state, k, lambda gen, c, key: prompts[c], wide, t)
        protos, space = self.prototypes(inputs, state)
        return keep_by_margin(inputs, drawn, quotas, protos, pc.drop_other_class, space)

    def prototypes(self, inputs, state, emb=None) -> tuple[np.ndarray, np.ndarray | None]:
        """(the run's noisy prototypes, their public subspace or None): read back once
        released, else drawn (round 1's noise) and persisted before anything reads them.
        Without noise (epsilon = inf) they are the clean sums: recomputed when needed, never
        written."""
        plan, dims = inputs.plan, inputs.cfg.proto.dims
        if plan.sigma > 0:
            saved = inputs.ckpt.load_array(KIND)
            if saved is not None:
                space = inputs.ckpt.load_array(SPACE) if dims else None
                return np.asarray(saved), None if space is None else np.asarray(space)
        pop = state.population
        if emb is None:
            emb = common.embeddings(inputs, state)
        space = None
        if dims:  # fixed by the zero-shot start: public, and the same for every later round
            start = np.asarray(pop.rounds) == 0
            space = prototypes.public_subspace(emb[start], dims)
        noise = inputs.noise.child("r1")
        spread.check_vote_inputs(1, noise, pop.texts, pop.labels, np.ones(len(pop), bool))
        priv_emb, priv_label, _ = inputs.models.private()
        log.info("releasing the class prototypes once (sigma=%.4g)", plan.sigma)
        out = aggregate_and_noise(
            noise,
            prototypes.project(priv_emb, space),
            priv_label,
            prototypes.project(emb, space),
            np.asarray(pop.labels, np.int32),
            q=inputs.cfg.voting.q,
            sigmas={KIND: plan.sigma},
            sensitivities={KIND: plan.l2_sensitivity},
            adjacency=plan.adjacency,
            num_classes=inputs.task.num_classes,
        )
        released = np.asarray(out.released[KIND], np.float32)
        if plan.sigma > 0:
            inputs.ckpt.save_arrays({KIND: released} | ({SPACE: space} if dims else {}))
        spread.check_released("the class prototypes", released)
        return released, space


def keep_by_margin(
    inputs, drawn: Drawn, quotas, protos, drop_other_class: bool, space=None
) -> Drawn:
    """Per class, the ``quotas[c]`` candidates of highest margin to the noisy prototypes
    (ties: the earlier one), in generation order; with ``drop_other_class`` only rows of
    positive margin. What is left out is counted; a class left short adds to the shortfall."""
    cfg = inputs.cfg
    flat = [text for texts in drawn.texts for text in texts]
    labels = np.asarray([c for c, texts in enumerate(drawn.texts) for _ in texts], np.int64)
    cache = cfg.embedder.cache_synthetic and inputs.writer
    emb = spread.embed_synthetic(
        inputs.models.embedder(), flat, progress=cfg.runtime.progress, cache=cache
    )
    emb = prototypes.project(emb, space)
    margin = prototypes.margins(emb, labels, protos) if flat else np.zeros(0)
    kept, not_top, other, short = [], 0, 0, 0
    start = 0
    for c, texts in enumerate(drawn.texts):
        m = margin[start : start + len(texts)]
        start += len(texts)
        order = np.argsort(-m, kind="stable")
        if drop_other_class:
            other += int((m <= 0).sum())
            order = order[m[order] > 0]
        top = np.sort(order[: quotas[c]])
        not_top += len(order) - len(top)
        short += max(quotas[c] - len(top), 0)
        kept.append(tuple(texts[i] for i in top))
    filtered = dict(drawn.filtered)
    filtered[NOT_TOP] = filtered.get(NOT_TOP, 0) + not_top
    if drop_other_class:
        filtered[OTHER_CLASS] = filtered.get(OTHER_CLASS, 0) + other
    # the generator's own shortfall is against the widened quotas: recount against the kept ones
    return dataclasses.replace(drawn, texts=tuple(kept), shortfall=short, filtered=filtered)


WASP_PROTO = register_method(WaspProto())
