"""The one vote-and-noise stage: private embeddings in, noisy vote histograms out.

``vote_and_noise`` is the only place where private data meet the synthetic population. It
validates its inputs, pads them to shape buckets (jit compiles once per bucket), computes the
clean Top-Q nearest/farthest histograms (``kernels.voting``), optionally sums them into segments,
noises every released histogram with the same sigma (per party sigma/sqrt(L), summed;
ALGORITHM.md 2.4-2.5) and returns only post-noise arrays in a ``NoisyVotes`` pytree together with
the L2 sensitivity of the release (``wasp_jax.privacy.l2_sensitivity``: same vote weights, number
of released histograms, adjacency, segmentation). Clean values never leave the jitted function.

Options: ``segment_ids``/``num_segments`` release per-segment sums (e.g. per PLM) instead of
per-row votes; one record's q votes can then all land in one segment, so the per-histogram
sensitivity is sum(w) instead of ||w||_2 (derived in ``privacy.l2_sensitivity(segmented=True)``).
``mesh`` splits the synthetic axis over all mesh axes with ``shard_map``: each device searches
its rows and only (n_priv, q) candidates are all-gathered; results equal the single-device ones.
``block_size`` streams the synthetic axis (memory O(n_priv * (q + block))).

Signature::

    vote_and_noise(noise_key, priv_emb, priv_label, syn_emb, syn_label, *, q, sigma,
                   release=("nearest", "farthest"), adjacency="add_remove",
                   priv_mask=None, syn_mask=None, party_id=None, num_parties=1,
                   segment_ids=None, num_segments=None, block_size=None, mesh=None,
                   norm_tol=1e-3) -> NoisyVotes

Example::

    sens = release_sensitivity(8)                       # 1.633, both histograms, add/remove
    sigma = privacy.calibrate_sigma(4.0, 1e-5, num_rounds=4, l2_sensitivity=sens)
    votes = vote_and_noise(jax.random.fold_in(noise_root, t), e_priv, y_priv, e_syn, y_syn,
                           q=8, sigma=sigma)
    votes.nearest, votes.farthest                       # (n_syn,) float32 each, noisy
"""

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from kernels.noise import add_party_noise
from kernels.padding import bucket_size, pad_rows
from kernels.voting import (
    candidate_histogram,
    merge_candidates,
    top_q_candidates,
    top_q_votes,
    top_q_votes_parties,
)
from wasp_jax import privacy

HISTOGRAMS = ("nearest", "farthest")

# Re-exported so that experiments/ (benchmarks) reach the kernel through wasp_jax.
__all__ = ["NoisyVotes", "make_syn_mesh", "release_sensitivity", "top_q_votes", "vote_and_noise"]


@flax.struct.dataclass
class NoisyVotes:
    """Post-noise release of one round. Holds nothing computed before the noise.

    Attributes:
      nearest: (n_syn,) or (num_segments,) float32 noisy nearest votes H~+, or None if not
        released.
      farthest: same for the farthest votes H~-.
      sigma: std of the noise on every released entry.
      l2_sensitivity: L2 sensitivity of the whole release (all released histograms).
      release: names of the released histograms.
      adjacency: neighbouring relation the sensitivity is computed for.
    """

    nearest: jax.Array | None
    farthest: jax.Array | None
    sigma: float = flax.struct.field(pytree_node=False)
    l2_sensitivity: float = flax.struct.field(pytree_node=False)
    release: tuple[str, ...] = flax.struct.field(pytree_node=False)
    adjacency: str = flax.struct.field(pytree_node=False)


def release_sensitivity(
    q: int,
    *,
    release=HISTOGRAMS,
    adjacency: str = "add_remove",
    segmented: bool = False,
) -> float:
    """L2 sensitivity of what ``vote_and_noise`` releases with these options (calibrate with it)."""
    release = _check_release(release)
    return privacy.l2_sensitivity(
        q, num_histograms=len(release), adjacency=adjacency, segmented=segmented
    )


def make_syn_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh ("pop",) over the first ``num_devices`` devices, with auto axis type."""
    n = jax.device_count() if num_devices is None else num_devices
    return jax.make_mesh((n,), ("pop",), axis_types=(jax.sharding.AxisType.Auto,))


def _check_release(release) -> tuple[str, ...]:
    release = (release,) if isinstance(release, str) else tuple(release)
    if not release or len(set(release)) != len(release) or not set(release) <= set(HISTOGRAMS):
        raise ValueError(f"release must be a non-empty subset of {HISTOGRAMS}, got {release!r}")
    return release


def _sharded_votes(
    priv_emb, priv_label, priv_mask, syn_emb, syn_label, syn_mask, *, q, block_size, mesh
):
    """Per-party clean histograms with the synthetic axis split over every axis of ``mesh``.

    Each device searches its own rows, the (n_priv, q) candidates of all devices are gathered
    and merged, and each device scatters the votes that land in its rows: only candidates
    cross devices, never the (n_priv, n_syn) similarities or the synthetic embeddings.
    """
    axes = tuple(mesh.axis_names)

    def local(pe, pl, pm, se, sl, sm):
        n_local = se.shape[0]
        offset = jax.lax.axis_index(axes) * n_local

        def per_party(emb, label, mask):
            found = top_q_candidates(emb, label, se, sl, q=q, syn_mask=sm, block_size=block_size)
            hists = []
            for vals, idx in found:
                vals = jax.lax.all_gather(vals, axes, axis=1, tiled=True)
                idx = jax.lax.all_gather(idx + offset, axes, axis=1, tiled=True)
                vals, idx = merge_candidates(vals, idx, q=q)
                hists.append(
                    candidate_histogram(vals, idx, n_syn=n_local, priv_mask=mask, offset=offset)
                )
            return tuple(hists)

        return jax.vmap(per_party)(pe, pl, pm)

    rows = P(axes)
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(), P(), P(), rows, rows, rows),
        out_specs=(P(None, axes), P(None, axes)),
        check_vma=False,
    )(priv_emb, priv_label, priv_mask, syn_emb, syn_label, syn_mask)


def _core(
    noise_key,
    sigma,
    priv_emb,
    priv_label,
    priv_mask,
    syn_emb,
    syn_label,
    syn_mask,
    segment_ids,
    *,
    q,
    release,
    num_segments,
    block_size,
    mesh,
):
    """Clean votes -> (optional segment sum) -> per-party noise; returns only noisy arrays."""
    if mesh is None:
        near, far = top_q_votes_parties(
            priv_emb,
            priv_label,
            syn_emb,
            syn_label,
            q=q,
            priv_mask=priv_mask,
            syn_mask=syn_mask,
            block_size=block_size,
        )
    else:
        near, far = _sharded_votes(
            priv_emb,
            priv_label,
            priv_mask,
            syn_emb,
            syn_label,
            syn_mask,
            q=q,
            block_size=block_size,
            mesh=mesh,
        )
    clean = {"nearest": near, "farthest": far}
    del near, far, priv_emb
    out = []
    for name in release:
        hist = clean.pop(name)
        if num_segments is not None:
            seg = lambda h: jax.ops.segment_sum(h, segment_ids, num_segments=num_segments)
            hist = jax.vmap(seg)(hist)
        # fold_in by histogram name: releasing one histogram draws the same noise for it as
        # releasing both.
        key = jax.random.fold_in(noise_key, HISTOGRAMS.index(name))
        out.append(add_party_noise(key, hist, sigma=sigma))
        del hist
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _jitted(q, release, num_segments, block_size, mesh):
    fn = functools.partial(
        _core,
        q=q,
        release=release,
        num_segments=num_segments,
        block_size=block_size,
        mesh=mesh,
    )
    if mesh is None:
        return jax.jit(fn)
    repl = NamedSharding(mesh, P())
    rows = NamedSharding(mesh, P(tuple(mesh.axis_names)))
    out = repl if num_segments is not None else rows
    return jax.jit(
        fn,
        in_shardings=(repl, repl, repl, repl, repl, rows, rows, rows, rows),
        out_shardings=tuple(out for _ in release),
    )


@jax.jit
def _norm_stats(emb, mask):
    norm = jnp.linalg.norm(emb.astype(jnp.float32), axis=1)
    dev = jnp.where(mask, jnp.abs(norm - 1.0), 0.0)
    return dev.max(), jnp.all(jnp.isfinite(emb) | ~mask[:, None])


def _check_embeddings(name, emb, mask, norm_tol):
    if emb.ndim != 2 or emb.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, d) with d >= 1, got {emb.shape}")
    if emb.shape[0] == 0:
        return
    dev, finite = _norm_stats(emb, jnp.asarray(mask))
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or inf in unmasked rows")
    if float(dev) > norm_tol:
        raise ValueError(
            f"{name} rows must be unit-norm (max | ||x|| - 1 | = {float(dev):.3g} > {norm_tol}); "
            "L2-normalise the embeddings (x / ||x||) before voting"
        )


def _check_vector(name, x, n, *, kind="int"):
    x = np.asarray(x)
    ok = np.issubdtype(x.dtype, np.integer) if kind == "int" else x.dtype == np.bool_
    if x.shape != (n,) or not ok:
        want = "integer" if kind == "int" else "bool"
        raise ValueError(f"{name} must be a ({n},) {want} array, got {x.dtype} {x.shape}")
    return x


def _group_parties(priv_emb, priv_label, priv_mask, party_id, num_parties, multiple):
    """Reorders private rows into (num_parties, bucket, ...) arrays plus a mask."""
    counts = np.bincount(party_id, minlength=num_parties)
    size = bucket_size(int(counts.max(initial=0)), multiple=multiple)
    gather = np.zeros((num_parties, size), np.int64)
    mask = np.zeros((num_parties, size), bool)
    for p in range(num_parties):
        rows = np.flatnonzero(party_id == p)
        gather[p, : rows.size] = rows
        mask[p, : rows.size] = priv_mask[rows]
    if priv_emb.shape[0] == 0:
        emb = np.zeros((num_parties, size, priv_emb.shape[1]), np.float32)
    else:
        take = np.take if isinstance(priv_emb, np.ndarray) else jnp.take
        emb = take(priv_emb, gather.reshape(-1), axis=0).reshape(num_parties, size, -1)
    label = priv_label[gather] if priv_label.size else np.zeros(gather.shape, np.int32)
    return emb, label, mask


def vote_and_noise(
    noise_key: jax.Array,
    priv_emb,
    priv_label,
    syn_emb,
    syn_label,
    *,
    q: int,
    sigma: float,
    release=HISTOGRAMS,
    adjacency: str = "add_remove",
    priv_mask=None,
    syn_mask=None,
    party_id=None,
    num_parties: int = 1,
    segment_ids=None,
    num_segments: int | None = None,
    block_size: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    norm_tol: float = 1e-3,
) -> NoisyVotes:
    """Top-Q votes of the private set on the synthetic set, noised for release.

    Args:
      noise_key: typed PRNG key of the DP noise stream (e.g. fold_in(noise_root, round)).
      priv_emb: (n_priv, d) unit-norm private embeddings (NumPy or JAX).
      priv_label: (n_priv,) int private labels.
      syn_emb: (n_syn, d) unit-norm synthetic embeddings, n_syn >= 1.
      syn_label: (n_syn,) int synthetic labels.
      q: votes per private sample and histogram (Q), >= 1.
      sigma: std of the aggregate noise on every released entry, >= 0 (0: no noise).
      release: which histograms to release, a non-empty subset of ("nearest", "farthest").
      adjacency: "add_remove" or "replace_one", recorded with the sensitivity.
      priv_mask: (n_priv,) bool, rows that vote (default all).
      syn_mask: (n_syn,) bool, rows that may receive votes (default all).
      party_id: (n_priv,) int in [0, num_parties), the data party of each private row
        (required when num_parties > 1).
      num_parties: L; each party noises its own histograms with sigma / sqrt(L) and the sums
        are released (assumes secure aggregation).
      segment_ids: (n_syn,) int in [0, num_segments): release per-segment sums of each
        histogram (e.g. per PLM) instead of per-row votes; sensitivity uses sum(w).
      num_segments: number of segments (with segment_ids).
      block_size: stream the synthetic axis in blocks of this many rows (bounded memory).
      mesh: shard the synthetic axis over all axes of this mesh (see ``make_syn_mesh``).
      norm_tol: allowed | ||x|| - 1 | of unmasked embedding rows.

    Returns:
      NoisyVotes with (n_syn,) (or (num_segments,)) float32 noisy histograms.

    Raises:
      ValueError: bad shapes, dtypes, labels, norms or options (message names the field).
    """
    release = _check_release(release)
    sens = release_sensitivity(
        q, release=release, adjacency=adjacency, segmented=segment_ids is not None
    )
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if isinstance(num_parties, bool) or not isinstance(num_parties, int) or num_parties < 1:
        raise ValueError(f"num_parties must be an integer >= 1, got {num_parties!r}")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"block_size must be None or an integer >= 1, got {block_size!r}")
    if priv_emb.ndim != 2 or syn_emb.ndim != 2 or priv_emb.shape[1] != syn_emb.shape[1]:
        raise ValueError(
            "priv_emb and syn_emb must be (n, d) arrays with the same d, got "
            f"{priv_emb.shape} and {syn_emb.shape}"
        )
    n_priv, n_syn = priv_emb.shape[0], syn_emb.shape[0]
    if n_syn < 1:
        raise ValueError("syn_emb must have at least one row")
    priv_label = _check_vector("priv_label", priv_label, n_priv)
    syn_label = _check_vector("syn_label", syn_label, n_syn)
    priv_mask = np.ones(n_priv, bool) if priv_mask is None else priv_mask
    syn_mask = np.ones(n_syn, bool) if syn_mask is None else syn_mask
    priv_mask = _check_vector("priv_mask", priv_mask, n_priv, kind="bool")
    syn_mask = _check_vector("syn_mask", syn_mask, n_syn, kind="bool")
    if party_id is None:
        if num_parties > 1:
            raise ValueError(f"party_id is required when num_parties={num_parties} > 1")
        party_id = np.zeros(n_priv, np.int64)
    party_id = _check_vector("party_id", party_id, n_priv)
    if n_priv and (party_id.min() < 0 or party_id.max() >= num_parties):
        raise ValueError(f"party_id values must be in [0, num_parties={num_parties})")
    if (segment_ids is None) != (num_segments is None):
        raise ValueError("segment_ids and num_segments must be given together")
    if segment_ids is not None:
        if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError(f"num_segments must be an integer >= 1, got {num_segments!r}")
        segment_ids = _check_vector("segment_ids", segment_ids, n_syn)
        if segment_ids.min() < 0 or segment_ids.max() >= num_segments:
            raise ValueError(f"segment_ids values must be in [0, num_segments={num_segments})")
    else:
        segment_ids = np.zeros(n_syn, np.int32)
    _check_embeddings("priv_emb", priv_emb, priv_mask, norm_tol)
    _check_embeddings("syn_emb", syn_emb, syn_mask, norm_tol)

    # Pad to buckets so that jit compiles once per bucket, not once per population size.
    multiple = 1 if mesh is None else mesh.size
    syn_size = bucket_size(n_syn, multiple=multiple)
    syn_emb_p, _ = pad_rows(syn_emb, syn_size)
    syn_label_p, _ = pad_rows(syn_label.astype(np.int32), syn_size)
    syn_mask_p, _ = pad_rows(syn_mask, syn_size, fill=False)
    seg_p, _ = pad_rows(segment_ids.astype(np.int32), syn_size)
    priv = _group_parties(
        priv_emb, priv_label.astype(np.int32), priv_mask, party_id, num_parties, 1
    )
    if block_size is not None and block_size >= syn_size:
        block_size = None
    fn = _jitted(int(q), release, num_segments, block_size, mesh)
    sigma_arr = np.float32(sigma)
    noisy = fn(noise_key, sigma_arr, *priv, syn_emb_p, syn_label_p, syn_mask_p, seg_p)
    del priv, priv_emb, priv_label, priv_mask
    if num_segments is None:
        noisy = tuple(h[:n_syn] for h in noisy)
    by_name = dict(zip(release, noisy, strict=True))
    return NoisyVotes(
        nearest=by_name.get("nearest"),
        farthest=by_name.get("farthest"),
        sigma=float(sigma),
        l2_sensitivity=sens,
        release=release,
        adjacency=adjacency,
    )
