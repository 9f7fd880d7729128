"""Bodies of the runner's stages: zero-shot start, one round's vote, one PLM's generation.

Each function takes the run's `RunContext` `r`, updates `r.state` and returns the arrays to
checkpoint with the stage. Keys and host generators are derived from (seed, stream, round,
plm, class), so a re-run of a stage after a crash reproduces it exactly.
"""

from __future__ import annotations

import logging
import warnings

import jax
import numpy as np

from wasp_jax import class_checks
from wasp_jax.models.api.spend import add_usage
from wasp_jax.pipeline.methods import plus_round
from wasp_jax.pipeline.run import spread
from wasp_jax.pipeline.run.keys import host_rng
from wasp_jax.pipeline.run.population import normalize
from wasp_jax.pipeline.run.state import RoundPlan
from wasp_jax.pipeline.stages import filters, generation, selection
from wasp_jax.pipeline.stages.prompts import round_prompts
from wasp_jax.pipeline.stages.vote import NoisyVotes, round_votes

log = logging.getLogger("wasp_jax")


def _record_shortfall(r, k: int, c: int, missing: int, round_: int) -> None:
    if missing <= 0:
        return
    r.state.current.shortfall += missing
    warnings.warn(
        f"round {round_}: PLM {r.plm_names[k]!r} produced {missing} fewer usable samples of "
        f"class {r.task.labels[c]!r} than its quota after {r.cfg.generation.max_attempts} "
        "attempts (not padded; recorded as shortfall in metrics.jsonl). Raise "
        "generation.max_new_tokens / max_attempts or lower the task's min_words.",
        stacklevel=2,
    )


def _draw_pool(r, k: int, quotas: list[int], round_: int) -> None:
    """replay: take the next unused rows of PLM k's pool, per class, in file order."""
    pools = r.pools()
    if r.state.pool_next is None:
        r.state.pool_next = [[0] * r.task.num_classes for _ in pools]
    seen = r.pop.seen()
    for c, quota in enumerate(quotas):
        pool, i, taken = pools[k][c], r.state.pool_next[k][c], []
        while len(taken) < quota and i < len(pool):
            text, i = pool[i], i + 1
            if normalize(text) not in seen:
                seen.add(normalize(text))
                taken.append(text)
        r.state.pool_next[k][c] = i
        r.pop.extend(taken, c, k, round_)
        _record_shortfall(r, k, c, quota - len(taken), round_)


def _generate(r, k: int, prompts_of_class, quotas: list[int], round_: int) -> None:
    gen = r.generator(k)
    key = jax.random.fold_in(jax.random.fold_in(r.gen_root, round_), k)
    results = generation.generate_quotas(
        gen,
        [prompts_of_class(gen, c, jax.random.fold_in(key, 1000 + c)) for c in range(len(quotas))],
        quotas,
        generation=r.cfg.generation,
        task=r.task,
        key=key,
        rng=host_rng(r.cfg.seed, "generate", round_, k),
        seen=r.pop.seen(),
        progress=r.cfg.runtime.progress,
    )
    take_usage = getattr(gen, "take_usage", None)  # API PLMs count requests and tokens
    if take_usage is not None:
        mine = r.state.current.api_usage.setdefault(r.plm_names[k], {})
        add_usage(mine, take_usage())
    for c, res in enumerate(results):
        r.pop.extend(res.texts, c, k, round_)
        filters.add_counts(r.state.current.filtered, res.filtered.items())
        _record_shortfall(r, k, c, res.shortfall, round_)


def initial(r, k: int, budget: int) -> dict:
    """Round 0 for PLM k: zero-shot samples with exact per-class quotas (§2.1)."""
    quotas = selection.class_quotas(budget, r.task.num_classes, offset=k)
    log.info("round 0: %s zero-shot %d samples", r.plm_names[k], budget)
    if r.cfg.is_replay:
        _draw_pool(r, k, quotas, 0)
    else:
        g = r.cfg.generation
        variants = lambda gen, c, key: generation.zero_shot_variants(gen, r.task, c, g, key)
        _generate(r, k, variants, quotas, 0)
    return {}


def _embed_new(r) -> np.ndarray:
    """Embeds the samples added since the last vote; returns all synthetic embeddings."""
    cfg, n = r.cfg, len(r.pop)
    new = r.pop.texts[r.state.n_embedded :]
    cache = cfg.embedder.cache_synthetic and r.writer
    emb = spread.embed_synthetic(r.embedder(), new, progress=cfg.runtime.progress, cache=cache)
    r.syn_emb = emb if r.syn_emb is None else np.concatenate([r.syn_emb, emb])
    r.state.n_embedded = n
    return r.syn_emb


def vote(r, t: int) -> dict:
    """Round t's DP vote (or random choice), selection and next-budget allocation."""
    cfg, task, pop = r.cfg, r.task, r.pop
    K, C, n = len(r.plm_names), task.num_classes, len(pop)
    total = cfg.generation.round_increment(t - 1)
    mask = selection.train_mask(cfg.voting, cfg.seed, n, t)
    arrays = {}
    if cfg.method == "wasp_plus":
        return plus_round.vote(r, t, _embed_new(r), mask, total)
    if cfg.method == "random_control":
        good, bad = selection.random_good_bad(cfg.seed, cfg.selection.s, pop.labels, mask, C, t)
        weights, budgets = selection.plm_allocation(np.zeros(K), total, tau=1.0, weighting=False)
        summary = None
    else:
        counts = np.bincount(np.asarray(pop.labels, np.int64)[mask], minlength=C).tolist()
        last_filtered = r.state.metrics[-1].get("filtered") if r.state.metrics else None
        class_checks.check_candidate_counts(
            counts,
            cfg.voting.q,
            label_names=task.labels,
            strict=False,
            what=f"round {t} synthetic candidates",
            empty_fix=(
                "every text generated for them was filtered out (round "
                f"{t - 1}'s filters removed {filters.describe(last_filtered) or 'nothing'}; "
                "metrics.jsonl has the counts). Raise generation.max_new_tokens or "
                "max_attempts, use a higher generation.top_p / temperature, a larger "
                "generation.budget or other PLMs (or lower the task's min_words), then rerun "
                "with --force"
            ),
        )
        syn_emb = _embed_new(r)
        noise = r.noise.child(f"r{t}")
        votes = _saved_votes(r, t)
        private = r.private() if votes is None else None
        if votes is None:
            log.info("round %d: voting over %d synthetic samples (sigma=%.4g)", t, n, r.plan.sigma)
        spread.check_vote_inputs(t, noise, pop.texts, pop.labels, mask)
        r.state.ledger.record(t)  # recorded before the release is drawn
        if votes is None:
            votes = round_votes(
                noise,
                private,
                syn_emb,
                np.asarray(pop.labels, np.int32),
                mask,
                voting=cfg.voting,
                plan=r.plan,
                mesh=r.vote_mesh,
            )
            del private
            if r.plan.sigma > 0:
                # Persisted before anything reads it: a resume reuses this release and never
                # draws round t's noise again (not even on other inputs). With sigma = 0
                # (epsilon = inf) the histograms are the clean votes: memory only.
                released = np.stack([np.asarray(h) for h in votes.histograms().values()])
                r.ckpt.save_arrays({f"votes_r{t}": released})
        spread.check_release(t, votes)
        good, bad = selection.select_good_bad(votes, pop.labels, mask, C, selection=cfg.selection)
        scores = selection.plm_scores(votes, pop.plm, mask, K, cfg.generation.plm_score)
        weights, budgets = selection.plm_allocation(
            scores, total, tau=cfg.generation.tau, weighting=cfg.generation.plm_weighting
        )
        summary = selection.vote_summary(votes, pop.labels, mask, C)
        arrays = {"syn_emb": syn_emb}
    r.state.plans[t] = RoundPlan(
        good=good,
        bad=bad,
        weights=[float(w) for w in weights],
        budgets=[int(b) for b in budgets],
        summary=summary,
    )
    log.info("round %d: PLM weights %s, budgets %s", t, np.round(weights, 3).tolist(), budgets)
    return arrays


def _saved_votes(r, t: int):
    """Round t's release as persisted when it was drawn, or None (not drawn yet)."""
    if r.plan.sigma == 0:
        return None
    saved = r.ckpt.load_array(f"votes_r{t}")
    if saved is None:
        return None
    release = tuple(r.cfg.voting.release)
    if saved.shape != (len(release), len(r.pop)):
        raise RuntimeError(
            f"round {t}'s saved release has shape {saved.shape}, expected "
            f"{(len(release), len(r.pop))}: the checkpoint is damaged; rerun with --force"
        )
    hists = dict(zip(release, saved, strict=True))
    return NoisyVotes(
        nearest=hists.get("nearest"),
        farthest=hists.get("farthest"),
        sigma=r.plan.sigma,
        l2_sensitivity=r.plan.l2_sensitivity,
        release=release,
        adjacency=r.plan.adjacency,
        private=r.plan.private,
    )


def finalize_plus(r) -> dict:
    """WASP+: every synthetic row's training weight (embeds the last round's rows)."""
    return plus_round.finalize(r, _embed_new)


def generate(r, t: int, k: int) -> dict:
    """Round t for PLM k: its budget from prompts built on the round's selection."""
    plan = r.state.plans[t]
    quotas = selection.class_quotas(plan.budgets[k], r.task.num_classes, offset=t + k)
    if r.cfg.is_replay:
        if r.cfg.method == "wasp_plus":
            plus_round.draw(r, k, quotas, t, _record_shortfall)
        else:
            _draw_pool(r, k, quotas, t)
        return {}
    g = r.cfg.generation
    prompts = round_prompts(
        r.task,
        r.pop.texts,
        plan.good,
        plan.bad,
        method=r.cfg.method,
        seed=r.cfg.seed,
        round_=t,
        s=r.cfg.selection.s,
        contrastive=g.contrastive,
        num_variants=g.num_prompt_variants,
    )
    log.info("round %d: %s generates %d samples", t, r.plm_names[k], plan.budgets[k])
    _generate(r, k, lambda gen, c, key: prompts[c], quotas, t)
    return {}
