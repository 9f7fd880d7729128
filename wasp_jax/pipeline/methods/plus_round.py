"""WASP+ stages: one round's aggregated DP release, the replay draw and the sample weights.

``plan_round`` is the round's logic on arrays (shared by the runner and the experiments):

    clusters, centres <- k-means per class over the candidates       (public)
    probes            <- a linear probe on each PLM's candidates      (public)
    releases          <- aggregate_and_noise(usefulness, per-cluster)  (the vote stage)
    budgets           <- softmax(noisy usefulness / temperature)      (post-processing)
    good / bad        <- members of the clusters with the highest noisy nearest / farthest
                         totals                                       (post-processing)

``vote`` runs it inside a run (recording every release in the ledger first), ``draw`` takes a
replay round's rows by cluster quotas and PLM budgets, and ``finalize`` gives every synthetic
row a training weight from the last round's noisy cluster totals (docs/method.md §9).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from wasp_jax.budget import allocate_budget
from wasp_jax.config import PlusConfig
from wasp_jax.pipeline.run import spread
from wasp_jax.pipeline.run.population import normalize
from wasp_jax.pipeline.run.state import RoundPlan
from wasp_jax.pipeline.stages import plus_select
from wasp_jax.pipeline.stages.vote_plus import aggregate_and_noise
from wasp_jax.privacy.plus_plan import PLUS_HISTOGRAMS

log = logging.getLogger("wasp_jax")


@dataclasses.dataclass
class PlusRound:
    """One WASP+ round after the noise (public: synthetic data and noisy values only)."""

    good: list[list[int]]
    bad: list[list[int]]
    shares: np.ndarray
    budgets: list[int]
    cluster: np.ndarray
    centres: np.ndarray
    totals: np.ndarray  # (2, n_clusters): noisy nearest and farthest cluster totals
    usefulness: np.ndarray  # (K,) noisy correct-counts


def plan_round(
    noise,
    private,
    syn_emb,
    labels,
    plm,
    mask,
    *,
    num_plms: int,
    num_classes: int,
    total: int,
    q: int,
    s: int,
    plus: PlusConfig,
    kinds,
    adjacency: str,
    seed: int,
    released: dict[str, np.ndarray] | None = None,
    on_release=None,
) -> PlusRound:
    """The round's releases and what follows from them; ``kinds`` = ((kind, sigma, sens), ...).

    ``released`` ({kind: noisy array}) reuses a release drawn before (a resumed round):
    nothing private is read and no noise is drawn. Otherwise the releases are drawn from
    ``noise`` and handed to ``on_release`` (which persists them) before anything reads them.
    """
    labels, plm = np.asarray(labels, np.int32), np.asarray(plm, np.int32)
    mask = np.asarray(mask, bool)
    kc = plus.clusters
    cluster, centres = plus_select.class_clusters(
        syn_emb, labels, mask, per_class=kc, num_classes=num_classes, seed=seed
    )
    if released is None:
        probes = plus_select.probe_params(
            syn_emb, labels, plm, mask, num_plms=num_plms, num_classes=num_classes
        )
        out = aggregate_and_noise(
            noise,
            private[0],
            private[1],
            syn_emb,
            labels,
            q=q,
            sigmas={k: sig for k, sig, _ in kinds},
            sensitivities={k: e for k, _, e in kinds},
            release=PLUS_HISTOGRAMS,
            adjacency=adjacency,
            syn_mask=mask,
            syn_plm=plm,
            num_plms=num_plms,
            syn_cluster=cluster,
            num_clusters=num_classes * kc,
            probes=probes,
        )
        released = {k: np.asarray(getattr(out, k), np.float32) for k, _, _ in kinds}
        if on_release is not None:
            on_release(released)
    totals = np.asarray(released["per_cluster"], np.float64)

    def pick(h):
        return plus_select.cluster_picks(
            totals[h],
            cluster,
            centres,
            syn_emb,
            labels,
            mask,
            s=s,
            num_classes=num_classes,
            per_class=kc,
        )

    good, bad = pick(0), pick(1)
    # good and bad are never the same text: a bad pick that is also good is dropped
    bad = [[i for i in b if i not in set(g)] for g, b in zip(good, bad, strict=True)]
    usefulness = np.asarray(released["usefulness"], np.float64)
    shares = plus_select.useful_shares(usefulness, temperature=plus.temperature)
    budgets = allocate_budget(shares, int(total))
    return PlusRound(good, bad, shares, budgets, cluster, centres, totals, usefulness)


def vote(r, t: int, syn_emb: np.ndarray, mask: np.ndarray, total: int) -> dict:
    """Round t of a WASP+ run: releases (recorded in the ledger before they are drawn, and
    persisted before anything reads them), selection and budgets."""
    cfg, pop = r.cfg, r.pop
    noise = r.noise.child(f"r{t}")
    spread.check_vote_inputs(t, noise, pop.texts, pop.labels, mask)
    r.state.ledger.record(t)
    names = {k: f"plus_{k}_r{t}" for k, _, _ in r.plan.kinds}
    saved = {k: r.ckpt.load_array(name) for k, name in names.items()}
    released = saved if all(v is not None for v in saved.values()) else None
    private = None if released is not None else r.private()
    log.info("round %d: WASP+ releases %s over %d candidates", t, r.plan.releases, len(pop))
    res = plan_round(
        noise,
        private,
        syn_emb,
        pop.labels,
        pop.plm,
        mask,
        num_plms=len(r.plm_names),
        num_classes=r.task.num_classes,
        total=total,
        q=cfg.voting.q,
        s=cfg.selection.s,
        plus=cfg.plus,
        kinds=r.plan.kinds,
        adjacency=r.plan.adjacency,
        seed=cfg.seed * 1000 + t,
        released=released,
        on_release=lambda out: r.ckpt.save_arrays({names[k]: v for k, v in out.items()}),
    )
    del private
    spread.check_released(f"round {t}'s WASP+ releases", res.usefulness, res.totals, res.centres)
    summary = {
        "usefulness": res.usefulness.round(3).tolist(),
        "cluster_nearest": res.totals[0].round(3).tolist(),
        "cluster_farthest": res.totals[1].round(3).tolist(),
    }
    r.state.plans[t] = RoundPlan(
        good=res.good,
        bad=res.bad,
        weights=[float(w) for w in res.shares],
        budgets=[int(b) for b in res.budgets],
        summary=summary,
    )
    log.info("round %d: PLM weights %s, budgets %s", t, np.round(res.shares, 3).tolist(),
             res.budgets)  # fmt: skip
    arrays = {"syn_emb": syn_emb, f"plus_centres_r{t}": res.centres.astype(np.float32)}
    return arrays


def _centres(r, t: int) -> np.ndarray:
    arr = r.ckpt.load_array(f"plus_centres_r{t}")
    if arr is None:
        raise RuntimeError(f"round {t}'s cluster centres are missing from the checkpoint")
    return np.asarray(arr, np.float64)


def cluster_quotas(totals: np.ndarray, quota: int) -> list[int]:
    """Integer quotas over one class's clusters, proportional to the positive noisy totals
    (uniform if none is positive)."""
    pos = np.maximum(np.asarray(totals, np.float64), 0.0)
    shares = pos / pos.sum() if pos.sum() > 0 else np.full(len(pos), 1.0 / len(pos))
    return allocate_budget(shares, int(quota))


def draw(r, k: int, quotas: list[int], t: int, record_shortfall) -> None:
    """Replay round t for PLM k: per class, the next window x quota unused pool rows are
    assigned to round t's nearest cluster centre and taken by cluster quotas."""
    pools, kc = r.pools(), r.cfg.plus.clusters
    if r.state.pool_next is None:
        r.state.pool_next = [[0] * r.task.num_classes for _ in pools]
    seen = r.pop.seen()
    centres = _centres(r, t)
    near = np.asarray(r.state.plans[t].summary["cluster_nearest"])
    for c, quota in enumerate(quotas):
        pool, i, window = pools[k][c], r.state.pool_next[k][c], []
        while len(window) < quota * r.cfg.plus.replay_window and i < len(pool):
            text, i = pool[i], i + 1
            if normalize(text) not in seen:
                seen.add(normalize(text))
                window.append(text)
        r.state.pool_next[k][c] = i
        taken = []
        if window and quota > 0:
            emb = np.asarray(r.embedder().embed(window, cache=r.cfg.embedder.cache_synthetic))
            cent = centres[c * kc : (c + 1) * kc]
            assign = ((emb[:, None, :] - cent[None]) ** 2).sum(-1).argmin(1)
            want = cluster_quotas(near[c * kc : (c + 1) * kc], quota)
            chosen = []
            for j, n_j in enumerate(want):
                chosen += np.flatnonzero(assign == j)[:n_j].tolist()
            rest = [x for x in range(len(window)) if x not in set(chosen)]
            chosen += rest[: quota - len(chosen)]
            taken = [window[x] for x in sorted(chosen)]
        r.pop.extend(taken, c, k, t)
        record_shortfall(r, k, c, quota - len(taken), t)


def finalize(r, embed_all) -> dict:
    """Training weights of every synthetic row from the last round's noisy cluster totals."""
    T, kc = r.cfg.generation.rounds, r.cfg.plus.clusters
    emb = embed_all(r)
    labels = np.asarray(r.pop.labels)
    centres = _centres(r, T)
    ids = np.zeros(len(labels), np.int32)
    for c in range(r.task.num_classes):
        rows = np.flatnonzero(labels == c)
        cent = centres[c * kc : (c + 1) * kc]
        ids[rows] = c * kc + ((emb[rows, None, :] - cent[None]) ** 2).sum(-1).argmin(1)
    near = np.asarray(r.state.plans[T].summary["cluster_nearest"])
    weights = plus_select.cluster_weights(near, ids)
    r.sample_weights = weights
    return {"syn_emb": emb, "sample_weights": weights.astype(np.float32)}
