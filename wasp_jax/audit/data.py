"""What the privacy audit releases: a config's release kinds, neighbouring datasets, one call.

``releases(cfg)`` lists the releases one round of the config makes, each with the sigma and
sensitivity its privacy plan calibrates: "votes" (WASP: the Top-Q histograms of
``vote_and_noise``) or the WASP+ kinds of ``aggregate_and_noise``. ``neighbours(release)``
builds a small fixed dataset (random unit embeddings, two classes, seed 0) and its
neighbour under the config's adjacency, which differs by one worst-case canary record:

* add/remove: D holds the canary, D' does not;
* replace-one: in D' the canary is replaced by a record of the other class.

The public inputs are arranged so that the canary's change reaches the derived sensitivity:
its q nearest and q farthest candidates are distinct, fall in one cluster (one PLM) each for
the summed kinds, and every usefulness probe classifies the canary right and its replacement
wrong. ``release_vector`` runs the real release function once and returns the released values
as one flat vector (sigma = 0 gives the clean values).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from wasp_jax.config import WaspConfig
from wasp_jax.errors import UsageError
from wasp_jax.pipeline.methods import resolve
from wasp_jax.pipeline.stages.vote import release_sensitivity, vote_and_noise
from wasp_jax.pipeline.stages.vote_plus import aggregate_and_noise
from wasp_jax.privacy.release_kinds import KINDS, kind_sensitivity

#: Embedding width, private records per class and clusters of the audit's dataset.
DIM, PRIVATE_PER_CLASS, NUM_CLUSTERS = 16, 3, 8
#: Most blocks of a usefulness release (its K B probes each classify every record of every
#: block, so a call costs blocks^3).
USEFULNESS_BLOCKS = 16


@dataclasses.dataclass(frozen=True)
class AuditedRelease:
    """One release kind of a round, as the config's privacy plan calibrates it.

    Attributes:
      kind: "votes" (WASP vote histograms) or a WASP+ kind (``release_kinds.KINDS``).
      sigma: the plan's noise std; sensitivity: the sensitivity the ledger accounts the
        release with (the derived one), from which the claimed epsilon follows.
      q, histograms, adjacency, num_parties, num_plms: the release's shape.
    """

    kind: str
    sigma: float
    sensitivity: float
    q: int
    histograms: tuple[str, ...]
    adjacency: str
    num_parties: int = 1
    num_plms: int = 1

    def derived_sensitivity(self, q: int | None = None) -> float:
        """The sensitivity derived for what is released (for ``q`` votes, default the run's)."""
        q = self.q if q is None else q
        if self.kind == "votes":
            return release_sensitivity(q, release=self.histograms, adjacency=self.adjacency)
        return kind_sensitivity(
            self.kind,
            q=q,
            num_histograms=len(self.histograms),
            num_plms=self.num_plms,
            adjacency=self.adjacency,
        )


def releases(cfg: WaspConfig) -> list[AuditedRelease]:
    """The releases of one round of ``cfg`` (raises UsageError if there is nothing to audit)."""
    try:
        method = resolve(cfg)
        request = method.release_request(cfg)
        plan = method.privacy_plan(cfg)
    except ValueError as err:
        raise UsageError(f"the config's privacy plan is refused: {err}") from err
    if plan is None:
        raise UsageError(f"method {cfg.method!r} releases nothing about private data to audit")
    if not plan.sigma > 0 or not np.isfinite(plan.epsilon):
        raise UsageError("privacy.epsilon is inf (no noise): set a finite privacy.epsilon")
    q, adj, hist = request.q, plan.adjacency, request.histograms
    if not plan.kinds and request.kinds != ("per_sample",):
        raise UsageError(
            f"the audit builds neighbouring datasets for vote releases only; {cfg.method!r} "
            f"releases {', '.join(request.kinds)}"
        )
    if not plan.kinds:  # one kind, the per-sample votes, takes the whole budget
        # the ledger accounts every release with the derived sensitivity: the claim is that
        return [
            AuditedRelease("votes", plan.sigma, plan.l2_sensitivity, q, hist, adj, plan.num_parties)
        ]
    unknown = [k for k, _, _ in plan.kinds if k not in KINDS]
    if unknown:
        raise UsageError(f"release kinds {unknown} have no release function to audit")
    k = request.num_plms
    return [AuditedRelease(n, s, e, q, hist, adj, 1, k) for n, s, e in plan.kinds]


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """Public inputs shared by D and D', the private part of each (emb, label, party), and
    ``coords``: (blocks, m) positions of each block's values in the flat release."""

    syn_emb: np.ndarray
    syn_label: np.ndarray
    syn_plm: np.ndarray
    syn_cluster: np.ndarray
    probes: tuple[np.ndarray, np.ndarray]
    d: tuple[np.ndarray, np.ndarray, np.ndarray]
    d_prime: tuple[np.ndarray, np.ndarray, np.ndarray]
    coords: np.ndarray
    num_plms: int
    num_clusters: int


def _unit(rng, n):
    x = rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _arrange(sims, q, near_id, far_id, others):
    """Segment of each of one class's candidates: its q nearest -> near_id, q farthest ->
    far_id, the others cycle through ``others``."""
    order = np.argsort(-sims, kind="stable")
    ids = np.array([others[i % len(others)] for i in range(sims.size)], np.int64)
    ids[order[:q]], ids[order[-q:]] = near_id, far_id
    return ids


def _coords(release: AuditedRelease, blocks: int, per_block_syn: int, k: int) -> np.ndarray:
    """(blocks, m) positions of each block's values in the flattened release."""
    b = np.arange(blocks)[:, None]
    if release.kind == "usefulness":
        return b * k + np.arange(k)
    width = {"per_plm": k, "per_cluster": NUM_CLUSTERS}.get(release.kind, per_block_syn)
    rows = len(release.histograms)
    return np.concatenate(
        [h * blocks * width + b * width + np.arange(width) for h in range(rows)], axis=1
    )


def neighbours(release: AuditedRelease, blocks: int = 1) -> Neighbours:
    """A fixed small dataset D holding the canary and its neighbour D' (module docstring).

    ``blocks`` > 1 repeats the dataset on disjoint classes (2b, 2b + 1), clusters, PLMs and
    probes, with one canary per block: one release then holds ``blocks`` independent
    trials, block b's values depending only on block b's records (``coords`` says where).
    A usefulness release takes at most ``USEFULNESS_BLOCKS``.
    """
    if release.kind == "usefulness":
        blocks = min(blocks, USEFULNESS_BLOCKS)
    rng = np.random.default_rng(0)
    q, k = release.q, release.num_plms
    per_class = 2 * q + 2  # the canary's q nearest and q farthest are distinct candidates
    syn_emb = _unit(rng, 2 * per_class)
    canary, other = _unit(rng, 2)  # the canary (class 0) and its replacement (class 1)
    sims = syn_emb @ np.stack([canary, other]).T
    c0, c1 = slice(0, per_class), slice(per_class, None)
    rest = list(range(4, NUM_CLUSTERS))
    cluster = np.concatenate(
        [_arrange(sims[c0, 0], q, 0, 1, rest), _arrange(sims[c1, 1], q, 2, 3, rest)]
    )
    plm = np.concatenate(
        [
            _arrange(sims[c0, 0], q, 0, 0, list(range(k))),
            _arrange(sims[c1, 1], q, 1 % k, 1 % k, list(range(k))),
        ]
    )
    n = 2 * PRIVATE_PER_CLASS
    base_emb, base_label = _unit(rng, n), np.arange(n) % 2
    # K probes per block: each says class 2b (block b's canary class) for both special records
    w = rng.normal(scale=0.05, size=(blocks, k, DIM, 2 * blocks))
    for b in range(blocks):
        w[b, :, :, 2 * b] += 8.0 * (canary + other)
    probes = (
        w.reshape(blocks * k, DIM, 2 * blocks).astype(np.float32),
        np.zeros((blocks * k, 2 * blocks), np.float32),
    )

    rep = lambda x: np.concatenate([x] * blocks)
    shift = lambda x, size: np.concatenate([x + b * size for b in range(blocks)])
    syn_label = shift(np.repeat([0, 1], per_class), 2)
    parties = max(1, release.num_parties)

    def private(extra_emb, extra_label):
        emb = rep(np.concatenate([base_emb, extra_emb]))
        label = shift(np.concatenate([base_label, extra_label]), 2).astype(np.int32)
        return emb, label, (np.arange(label.size) % parties).astype(np.int32)

    none = (np.zeros((0, DIM), np.float32), np.zeros(0, np.int64))
    d = private(canary[None], np.array([0]))
    if release.adjacency == "replace_one":
        d_prime = private(other[None], np.array([1]))
    else:
        d_prime = private(*none)
    return Neighbours(
        syn_emb=rep(syn_emb),
        syn_label=syn_label.astype(np.int32),
        syn_plm=shift(plm, k).astype(np.int32),
        syn_cluster=shift(cluster, NUM_CLUSTERS).astype(np.int32),
        probes=probes,
        d=d,
        d_prime=d_prime,
        coords=_coords(release, blocks, 2 * per_class, k),
        num_plms=blocks * k,
        num_clusters=blocks * NUM_CLUSTERS,
    )


def release_vector(
    release: AuditedRelease, noise, nb: Neighbours, private, *, sigma: float, check: bool = True
) -> np.ndarray:
    """One call of the real release function on ``private``, flattened (float64).

    The call's sensitivity (the derived one of what it releases: sqrt(K B) for usefulness
    over B blocks of K probes) is passed for the release's own check; ``check=False`` skips
    that check (a planted bug does).
    """
    emb, label, party = private
    whole = dataclasses.replace(release, num_plms=nb.num_plms)
    sens = whole.derived_sensitivity() if check else None
    data = (noise, emb, label, nb.syn_emb, nb.syn_label)
    shape = {"q": release.q, "release": release.histograms, "adjacency": release.adjacency}
    if release.kind == "votes":
        out = vote_and_noise(
            *data,
            sigma=sigma,
            party_id=party,
            num_parties=release.num_parties,
            l2_sensitivity=sens,
            **shape,
        )
        return np.concatenate([np.asarray(h, np.float64) for h in out.histograms().values()])
    out = aggregate_and_noise(
        *data,
        sigmas={release.kind: sigma},
        sensitivities=None if sens is None else {release.kind: sens},
        **shape,
        syn_plm=nb.syn_plm,
        num_plms=nb.num_plms,
        syn_cluster=nb.syn_cluster,
        num_clusters=nb.num_clusters,
        probes=nb.probes,
    )
    return np.asarray(getattr(out, release.kind), np.float64).reshape(-1)
