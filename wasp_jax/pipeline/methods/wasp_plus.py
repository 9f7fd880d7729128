"""WASP+: aggregated DP releases set the PLM budgets, the examples and the sample weights.

Each round releases, instead of per-sample votes, two aggregated kinds that split the budget
by `plus.usefulness_share` / `plus.cluster_share`: ``usefulness`` (per PLM, private records
its synthetic data's linear probe classifies right) and ``per_cluster`` (Top-Q nearest and
farthest votes summed per public k-means cluster of the candidates). Candidates are generated
by the PLMs, or with `replay.pools` set, replayed from the pools by cluster quotas.

``plan_round`` is the round's logic on arrays (shared by the runner and the experiments):

    clusters, centres <- k-means per class over the candidates       (public)
    probes            <- a linear probe on each PLM's candidates      (public)
    releases          <- aggregate_and_noise(usefulness, per-cluster)  (the vote stage)
    budgets           <- softmax(noisy usefulness / temperature)      (post-processing)
    good / bad        <- members of the clusters with the highest noisy nearest / farthest
                         totals                                       (post-processing)

``WaspPlus.decide`` runs it inside a run (the ledger records every release first),
``WaspPlus.draw`` generates a round's candidates or takes a replay round's rows by cluster
quotas and PLM budgets, and ``WaspPlus.row_weights`` gives every synthetic row a training
weight from the last round's noisy cluster totals (docs/method.md §9).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from wasp_jax.budget import allocate_budget
from wasp_jax.config import PlusConfig, WaspConfig
from wasp_jax.config.sections import _check
from wasp_jax.pipeline.methods import common
from wasp_jax.pipeline.methods.base import Method
from wasp_jax.pipeline.methods.registry import register_method
from wasp_jax.pipeline.methods.wasp import Wasp, check_round_budget
from wasp_jax.pipeline.run import spread
from wasp_jax.pipeline.run.results import Decided, Weighted
from wasp_jax.pipeline.run.sizing import Need
from wasp_jax.pipeline.stages import plus_select, selection
from wasp_jax.pipeline.stages.vote_plus import aggregate_and_noise
from wasp_jax.privacy.plan import ReleaseRequest

#: The histograms a WASP+ per-cluster release sums (good and bad examples).
PLUS_HISTOGRAMS = ("nearest", "farthest")

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


def cluster_quotas(totals: np.ndarray, quota: int) -> list[int]:
    """Integer quotas over one class's clusters, proportional to the positive noisy totals
    (uniform if none is positive)."""
    pos = np.maximum(np.asarray(totals, np.float64), 0.0)
    shares = pos / pos.sum() if pos.sum() > 0 else np.full(len(pos), 1.0 / len(pos))
    return allocate_budget(shares, int(quota))


class WaspPlus(Wasp):
    """Aggregated DP releases (probe usefulness, per-cluster votes) steer the rounds."""

    name = "wasp_plus"
    summary = (
        "WASP+: aggregated DP releases (per-PLM probe usefulness, per-cluster vote totals) set "
        "the PLM budgets, the good/bad examples and the sample weights."
    )
    sections = (
        "data",
        "privacy",
        "voting",
        "selection",
        "generation",
        "embedder",
        "plus",
        "replay",
    )

    def check_config(self, cfg: WaspConfig) -> None:
        Method.check_config(self, cfg)
        _check(
            cfg.privacy.sensitivity_override is None,
            "privacy.sensitivity_override",
            "method 'wasp_plus' derives the sensitivity of each release kind; remove the override",
        )
        check_round_budget(cfg)

    def first_vote_need(self, cfg: WaspConfig) -> Need | None:
        return None

    def replays(self, cfg: WaspConfig) -> bool:
        return bool(cfg.replay.pools)

    def release_request(self, cfg: WaspConfig) -> ReleaseRequest:
        return ReleaseRequest(
            kinds=tuple(cfg.plus.fractions()),
            rounds=cfg.generation.rounds,
            q=cfg.voting.q,
            histograms=PLUS_HISTOGRAMS,
            num_plms=len(self.plm_names(cfg)),
            shares=cfg.plus.fractions(),
        )

    def decide(self, inputs, state, t) -> Decided:
        """Round t: releases (recorded in the ledger before the stage, persisted before
        anything reads them), selection and budgets."""
        cfg, pop, plan = inputs.cfg, state.population, inputs.plan
        mask = selection.train_mask(cfg.voting, cfg.seed, len(pop), t)
        emb = common.embeddings(inputs, state)
        noise = inputs.noise.child(f"r{t}")
        spread.check_vote_inputs(t, noise, pop.texts, pop.labels, mask)
        names = {k: f"plus_{k}_r{t}" for k, _, _ in plan.kinds}
        saved = {k: inputs.ckpt.load_array(name) for k, name in names.items()}
        released = saved if all(v is not None for v in saved.values()) else None
        private = None if released is not None else inputs.models.private()
        log.info("round %d: WASP+ releases %s over %d candidates", t, plan.releases, len(pop))
        res = plan_round(
            noise,
            private,
            emb,
            pop.labels,
            pop.plm,
            mask,
            num_plms=len(inputs.plm_names),
            num_classes=inputs.task.num_classes,
            total=cfg.generation.round_increment(t - 1),
            q=cfg.voting.q,
            s=cfg.selection.s,
            plus=cfg.plus,
            kinds=plan.kinds,
            adjacency=plan.adjacency,
            seed=cfg.seed * 1000 + t,
            released=released,
            on_release=lambda out: inputs.ckpt.save_arrays({names[k]: v for k, v in out.items()}),
        )
        del private
        spread.check_released(
            f"round {t}'s WASP+ releases", res.usefulness, res.totals, res.centres
        )
        summary = {
            "usefulness": res.usefulness.round(3).tolist(),
            "cluster_nearest": res.totals[0].round(3).tolist(),
            "cluster_farthest": res.totals[1].round(3).tolist(),
        }
        decision = common.decision(t, res.good, res.bad, res.shares, res.budgets, summary)
        centres = {f"plus_centres_r{t}": res.centres.astype(np.float32)}
        return Decided(t, decision, embeddings=emb, arrays=centres)

    def draw(self, inputs, state, t, k):
        if not self.replays(inputs.cfg):
            return super().draw(inputs, state, t, k)
        quotas = common.quotas_of(inputs, state.decisions[t].budgets[k], t + k)
        return _replay_by_clusters(inputs, state, k, quotas, t)

    def initial(self, inputs, state, k, budget):
        if not self.replays(inputs.cfg):
            return common.zero_shot(inputs, state, k, budget)
        return common.replayed(inputs, state, k, common.quotas_of(inputs, budget, k), 0)

    def weights_rows(self, cfg: WaspConfig) -> bool:
        return cfg.plus.sample_weights

    def row_weights(self, inputs, state) -> Weighted:
        """Training weights of every synthetic row from the last round's noisy cluster totals."""
        T, kc = inputs.cfg.generation.rounds, inputs.cfg.plus.clusters
        emb = common.embeddings(inputs, state)
        labels = np.asarray(state.population.labels)
        centres = _centres(inputs, T)
        ids = np.zeros(len(labels), np.int32)
        for c in range(inputs.task.num_classes):
            rows = np.flatnonzero(labels == c)
            cent = centres[c * kc : (c + 1) * kc]
            ids[rows] = c * kc + ((emb[rows, None, :] - cent[None]) ** 2).sum(-1).argmin(1)
        near = np.asarray(state.decisions[T].summary["cluster_nearest"])
        return Weighted(plus_select.cluster_weights(near, ids), embeddings=emb)


def _centres(inputs, t: int) -> np.ndarray:
    arr = inputs.ckpt.load_array(f"plus_centres_r{t}")
    if arr is None:
        raise RuntimeError(f"round {t}'s cluster centres are missing from the checkpoint")
    return np.asarray(arr, np.float64)


def _replay_by_clusters(inputs, state, k: int, quotas, t: int):
    """Replay round t for PLM k: per class, the next window x quota unused pool rows are
    assigned to round t's nearest cluster centre and taken by cluster quotas."""
    kc, window = inputs.cfg.plus.clusters, inputs.cfg.plus.replay_window
    windows, stops = common.next_pool_rows(inputs, state, k, [q * window for q in quotas])
    centres = _centres(inputs, t)
    near = np.asarray(state.decisions[t].summary["cluster_nearest"])
    taken = []
    for c, (quota, rows) in enumerate(zip(quotas, windows, strict=True)):
        chosen = []
        if rows and quota > 0:
            emb = np.asarray(
                inputs.models.embedder().embed(rows, cache=inputs.cfg.embedder.cache_synthetic)
            )
            cent = centres[c * kc : (c + 1) * kc]
            assign = ((emb[:, None, :] - cent[None]) ** 2).sum(-1).argmin(1)
            for j, n_j in enumerate(cluster_quotas(near[c * kc : (c + 1) * kc], quota)):
                chosen += np.flatnonzero(assign == j)[:n_j].tolist()
            rest = [x for x in range(len(rows)) if x not in set(chosen)]
            chosen += rest[: quota - len(chosen)]
        taken.append([rows[x] for x in sorted(chosen)])
    return common.pool_drawn(inputs, k, t, taken, quotas, stops)


WASP_PLUS = register_method(WaspPlus())
