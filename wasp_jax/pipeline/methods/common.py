"""Stage bodies that several methods share: drawing candidates, embedding them, the
per-sample DP vote and the random control's draw.

Every function reads the run's inputs and state and returns a typed result (or arrays); none
changes either. Keys and host generators are derived from (seed, stream, round, plm, class),
so a re-run of a stage after a crash reproduces it exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Sequence

import jax
import numpy as np

from wasp_jax import class_checks
from wasp_jax.pipeline.run import spread
from wasp_jax.pipeline.run.inputs import RunInputs
from wasp_jax.pipeline.run.keys import host_rng
from wasp_jax.pipeline.run.population import normalize
from wasp_jax.pipeline.run.results import Decided, Drawn
from wasp_jax.pipeline.run.state import RoundDecision, RunState
from wasp_jax.pipeline.stages import filters, generation, selection
from wasp_jax.pipeline.stages.vote import NoisyVotes, round_votes

log = logging.getLogger("wasp_jax")


def warn_shortfall(inputs: RunInputs, k: int, c: int, missing: int, round_: int) -> int:
    """Warns about `missing` samples of class c from PLM k; returns `missing` (or 0)."""
    if missing <= 0:
        return 0
    warnings.warn(
        f"round {round_}: PLM {inputs.plm_names[k]!r} produced {missing} fewer usable samples "
        f"of class {inputs.task.labels[c]!r} than its quota after "
        f"{inputs.cfg.generation.max_attempts} attempts (not padded; recorded as shortfall in "
        "metrics.jsonl). Raise generation.max_new_tokens / max_attempts or lower the task's "
        "min_words.",
        stacklevel=2,
    )
    return missing


def quotas_of(inputs: RunInputs, budget: int, offset: int) -> list[int]:
    return selection.class_quotas(budget, inputs.task.num_classes, offset=offset)


# -- candidates from the PLMs ---------------------------------------------------------------


def generated(
    inputs: RunInputs,
    state: RunState,
    k: int,
    prompts_of_class: Callable,
    quotas: Sequence[int],
    round_: int,
) -> Drawn:
    """PLM k's samples of `quotas` per class, prompted by `prompts_of_class(gen, c, key)`."""
    gen = inputs.models.generator(k)
    key = jax.random.fold_in(jax.random.fold_in(inputs.gen_root, round_), k)
    prompts = [
        prompts_of_class(gen, c, jax.random.fold_in(key, 1000 + c)) for c in range(len(quotas))
    ]
    results = generation.generate_quotas(
        gen,
        prompts,
        quotas,
        generation=inputs.cfg.generation,
        task=inputs.task,
        key=key,
        rng=host_rng(inputs.cfg.seed, "generate", round_, k),
        seen=state.population.seen(),
        progress=inputs.cfg.runtime.progress,
    )
    take_usage = getattr(gen, "take_usage", None)  # API PLMs count requests and tokens
    filtered: dict[str, int] = {}
    shortfall = 0
    for c, res in enumerate(results):
        filters.add_counts(filtered, res.filtered.items())
        shortfall += warn_shortfall(inputs, k, c, res.shortfall, round_)
    return Drawn(
        plm=k,
        plm_name=inputs.plm_names[k],
        round=round_,
        texts=tuple(tuple(res.texts) for res in results),
        shortfall=shortfall,
        filtered=filtered,
        api_usage=None if take_usage is None else take_usage(),
    )


def zero_shot(inputs: RunInputs, state: RunState, k: int, budget: int) -> Drawn:
    """Round 0 for PLM k: zero-shot samples with exact per-class quotas (§2.1)."""
    log.info("round 0: %s zero-shot %d samples", inputs.plm_names[k], budget)
    g, task = inputs.cfg.generation, inputs.task
    variants = lambda gen, c, key: generation.zero_shot_variants(gen, task, c, g, key)
    return generated(inputs, state, k, variants, quotas_of(inputs, budget, k), 0)


#: The key stream of the zero-shot baseline's extra rows (never a round of the run).
BASELINE_ROUND = 1_000_000


def zero_shot_baseline(inputs: RunInputs, state: RunState, k: int, budget: int) -> Drawn:
    """PLM k's share of the extra zero-shot rows that make the evaluation's zero-shot
    baseline as large as the synthetic set (their own key stream; no private data)."""
    log.info("zero-shot baseline: %s writes %d more samples", inputs.plm_names[k], budget)
    g, task = inputs.cfg.generation, inputs.task
    variants = lambda gen, c, key: generation.zero_shot_variants(gen, task, c, g, key)
    quotas = quotas_of(inputs, budget, k)
    drawn = generated(inputs, state, k, variants, quotas, BASELINE_ROUND)
    return dataclasses.replace(drawn, baseline=True, api_usage=None)


# -- candidates from replayed pools ---------------------------------------------------------


def next_pool_rows(
    inputs: RunInputs, state: RunState, k: int, wants: Sequence[int]
) -> tuple[list[list[str]], list[int]]:
    """Per class, the next `wants[c]` unused rows of pool k in file order (rows already in
    the population are skipped), and where each class's reading stopped."""
    pools = inputs.models.pools()
    start = state.pool_next[k] if state.pool_next is not None else [0] * len(wants)
    seen = state.population.seen()
    rows, stops = [], []
    for c, want in enumerate(wants):
        pool, i, taken = pools[k][c], start[c], []
        while len(taken) < want and i < len(pool):
            text, i = pool[i], i + 1
            if normalize(text) not in seen:
                seen.add(normalize(text))
                taken.append(text)
        rows.append(taken)
        stops.append(i)
    return rows, stops


def pool_drawn(
    inputs: RunInputs, k: int, round_: int, texts: list[list[str]], quotas, stops
) -> Drawn:
    """A replayed draw as a stage result (a shortfall is warned about per class)."""
    shortfall = sum(
        warn_shortfall(inputs, k, c, q - len(t), round_)
        for c, (q, t) in enumerate(zip(quotas, texts, strict=True))
    )
    return Drawn(
        plm=k,
        plm_name=inputs.plm_names[k],
        round=round_,
        texts=tuple(tuple(t) for t in texts),
        shortfall=shortfall,
        pool_next=tuple(stops),
        num_pools=len(inputs.plm_names),
    )


def replayed(inputs: RunInputs, state: RunState, k: int, quotas, round_: int) -> Drawn:
    """The next unused rows of PLM k's pool, per class, in file order."""
    rows, stops = next_pool_rows(inputs, state, k, quotas)
    return pool_drawn(inputs, k, round_, rows, quotas, stops)


# -- embeddings and the per-sample vote -----------------------------------------------------


def embeddings(inputs: RunInputs, state: RunState) -> np.ndarray:
    """The embeddings of every synthetic row: the saved ones and the rows added since."""
    cfg = inputs.cfg
    new = state.population.texts[state.n_embedded :]
    cache = cfg.embedder.cache_synthetic and inputs.writer
    emb = spread.embed_synthetic(
        inputs.models.embedder(), new, progress=cfg.runtime.progress, cache=cache
    )
    return emb if state.embeddings is None else np.concatenate([state.embeddings, emb])


def check_candidates(inputs: RunInputs, state: RunState, t: int, mask: np.ndarray) -> None:
    """Every class has at least voting.q candidates (else the error names the fix)."""
    C = inputs.task.num_classes
    labels = np.asarray(state.population.labels, np.int64)
    counts = np.bincount(labels[mask], minlength=C).tolist()
    last_filtered = state.metrics[-1].get("filtered") if state.metrics else None
    class_checks.check_candidate_counts(
        counts,
        inputs.cfg.voting.q,
        label_names=inputs.task.labels,
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


def noisy_votes(inputs: RunInputs, state: RunState, t: int, emb, mask) -> NoisyVotes:
    """Round t's per-sample release: read back if drawn before, else drawn and persisted
    before anything reads it (the ledger recorded it before the stage began)."""
    cfg, pop, plan = inputs.cfg, state.population, inputs.plan
    noise = inputs.noise.child(f"r{t}")
    votes = saved_votes(inputs, state, t)
    private = inputs.models.private() if votes is None else None
    if votes is None:
        log.info("round %d: voting over %d synthetic samples (sigma=%.4g)", t, len(pop), plan.sigma)
    # every process holds the same population, split and noise before anything is released
    spread.check_vote_inputs(t, noise, pop.texts, pop.labels, mask)
    if votes is not None:
        return votes
    votes = round_votes(
        noise,
        private,
        emb,
        np.asarray(pop.labels, np.int32),
        mask,
        voting=cfg.voting,
        plan=plan,
        mesh=inputs.vote_mesh,
    )
    del private
    if plan.sigma > 0:
        # Persisted before anything reads it: a resume reuses this release and never draws
        # round t's noise again (not even on other inputs). With sigma = 0 (epsilon = inf)
        # the histograms are the clean votes: memory only.
        released = np.stack([np.asarray(h) for h in votes.histograms().values()])
        inputs.ckpt.save_arrays({f"votes_r{t}": released})
    return votes


def saved_votes(inputs: RunInputs, state: RunState, t: int) -> NoisyVotes | None:
    """Round t's release as persisted when it was drawn, or None (not drawn yet)."""
    plan, n = inputs.plan, len(state.population)
    if plan.sigma == 0:
        return None
    saved = inputs.ckpt.load_array(f"votes_r{t}")
    if saved is None:
        return None
    release = tuple(inputs.cfg.voting.release)
    if saved.shape != (len(release), n):
        raise RuntimeError(
            f"round {t}'s saved release has shape {saved.shape}, expected "
            f"{(len(release), n)}: the checkpoint is damaged; rerun with --force"
        )
    hists = dict(zip(release, saved, strict=True))
    return NoisyVotes(
        nearest=hists.get("nearest"),
        farthest=hists.get("farthest"),
        sigma=plan.sigma,
        l2_sensitivity=plan.l2_sensitivity,
        release=release,
        adjacency=plan.adjacency,
        private=plan.private,
    )


def voted(inputs: RunInputs, state: RunState, t: int) -> Decided:
    """Round t's DP vote, the good/bad selection and the next PLM allocation (§2.3-§2.7)."""
    cfg, pop = inputs.cfg, state.population
    K, C = len(inputs.plm_names), inputs.task.num_classes
    mask = selection.train_mask(cfg.voting, cfg.seed, len(pop), t)
    check_candidates(inputs, state, t, mask)
    emb = embeddings(inputs, state)
    votes = noisy_votes(inputs, state, t, emb, mask)
    hists = [np.asarray(h, np.float32) for h in votes.histograms().values()]
    spread.check_released(f"round {t}'s noisy votes", *hists)
    good, bad = selection.select_good_bad(votes, pop.labels, mask, C, selection=cfg.selection)
    scores = selection.plm_vote_scores(votes, pop.plm, mask, K, cfg.generation.plm_score)
    weights, budgets = allocation(inputs, t, scores)
    summary = selection.vote_summary(votes, pop.labels, mask, C)
    return Decided(t, decision(t, good, bad, weights, budgets, summary), embeddings=emb)


def allocation(inputs: RunInputs, t: int, scores) -> tuple[np.ndarray, list[int]]:
    """The PLMs' shares of round t's new samples from their scores (softmax over tau, or
    uniform without PLM weighting) and the integer budgets."""
    g = inputs.cfg.generation
    total = g.round_increment(t - 1)
    return selection.plm_allocation(scores, total, tau=g.tau, weighting=g.plm_weighting)


def decision(t: int, good, bad, weights, budgets, summary) -> RoundDecision:
    log.info("round %d: PLM weights %s, budgets %s", t, np.round(weights, 3).tolist(), budgets)
    return RoundDecision(
        good=good,
        bad=bad,
        weights=[float(w) for w in weights],
        budgets=[int(b) for b in budgets],
        summary=summary,
    )
