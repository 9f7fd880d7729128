"""Top-Q nearest/farthest voting with geometric weights (ALGORITHM.md 2.4).

Every valid private sample votes for the ``q`` synthetic samples of its own class that are
nearest to it (weights 1, 1/2, ..., 2**(1-q)) and, separately, for the ``q`` farthest ones.
Embeddings are unit-norm, so the largest inner product is the smallest L2 distance.

The synthetic axis is processed as one block or streamed in blocks of ``block_size`` with a
running top-q merge, so memory is O(n_priv * (q + block)) instead of O(n_priv * n_syn). Inside
a block the top-q search is exact but cheap: a max over groups of ``_GROUP`` columns first, then
``lax.top_k`` only over the q best groups' members (the q best elements always lie in the q
groups with the largest maxima).

Example::

    nearest, farthest = top_q_votes(priv_emb, priv_label, syn_emb, syn_label, q=8)
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np

_GROUP = 16
_NEG_INF = -jnp.inf


def vote_weights(q: int) -> np.ndarray:
    """Geometric vote weights (1, 1/2, ..., 2**(1-q)), float64; the single source of truth.

    ``wasp_jax.privacy`` derives the L2 sensitivity from exactly these weights.
    """
    if isinstance(q, bool) or not isinstance(q, int | np.integer) or q < 1:
        raise ValueError(f"q must be an integer >= 1, got {q!r}")
    return 2.0 ** -np.arange(int(q), dtype=np.float64)


def _top_k(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Exact row-wise top-k of ``x`` (m, n) via group maxima; returns values and column ids."""
    m, n = x.shape
    if n <= 4 * _GROUP * k:
        return jax.lax.top_k(x, k)
    num_groups = -(-n // _GROUP)
    pad = num_groups * _GROUP - n
    if pad:
        x = jnp.pad(x, ((0, 0), (0, pad)), constant_values=_NEG_INF)
    grouped = x.reshape(m, num_groups, _GROUP)
    _, group_idx = jax.lax.top_k(grouped.max(axis=-1), k)  # (m, k)
    cand = jnp.take_along_axis(grouped, group_idx[:, :, None], axis=1).reshape(m, k * _GROUP)
    vals, pos = jax.lax.top_k(cand, k)
    idx = jnp.take_along_axis(group_idx, pos // _GROUP, axis=1) * _GROUP + pos % _GROUP
    return vals, idx


def _block_top_q(priv_emb, priv_label, syn_emb, syn_label, syn_mask, offset, q):
    """Top-q nearest and farthest candidates of one synthetic block.

    Returns ((near_val, near_idx), (far_val, far_idx)), each (n_priv, min(q, block)); values
    are similarities (negated for farthest), -inf for non-candidates; ids are global.
    """
    sim = jnp.matmul(priv_emb, syn_emb.T, precision=jax.lax.Precision.HIGHEST)
    valid = (priv_label[:, None] == syn_label[None, :]) & syn_mask[None, :]
    k = min(q, syn_emb.shape[0])
    near_val, near_idx = _top_k(jnp.where(valid, sim, _NEG_INF), k)
    far_val, far_idx = _top_k(jnp.where(valid, -sim, _NEG_INF), k)
    return (near_val, near_idx + offset), (far_val, far_idx + offset)


def _merge(running, new, q):
    """Keeps the q best of the running (n_priv, q) and new (n_priv, k) candidates."""
    vals = jnp.concatenate([running[0], new[0]], axis=1)
    idx = jnp.concatenate([running[1], new[1]], axis=1)
    best, pos = jax.lax.top_k(vals, q)
    return best, jnp.take_along_axis(idx, pos, axis=1)


def _streamed_top_q(priv_emb, priv_label, syn_emb, syn_label, syn_mask, q, block_size):
    n_priv, n_syn = priv_emb.shape[0], syn_emb.shape[0]
    empty = (jnp.full((n_priv, q), _NEG_INF, priv_emb.dtype), jnp.zeros((n_priv, q), jnp.int32))
    num_full = n_syn // block_size

    def body(i, carry):
        start = i * block_size
        take = lambda a: jax.lax.dynamic_slice_in_dim(a, start, block_size, axis=0)
        near, far = _block_top_q(
            priv_emb, priv_label, take(syn_emb), take(syn_label), take(syn_mask), start, q
        )
        return _merge(carry[0], near, q), _merge(carry[1], far, q)

    near, far = jax.lax.fori_loop(0, num_full, body, (empty, empty))
    if n_syn % block_size:
        start = num_full * block_size
        tail = _block_top_q(
            priv_emb,
            priv_label,
            syn_emb[start:],
            syn_label[start:],
            syn_mask[start:],
            start,
            q,
        )
        near, far = _merge(near, tail[0], q), _merge(far, tail[1], q)
    return near, far


def _histogram(vals, idx, priv_mask, n_syn):
    """Scatters geometric weights of the selected candidates into an (n_syn,) histogram."""
    k = vals.shape[1]
    w = jnp.asarray(vote_weights(k), jnp.float32)[None, :] * priv_mask[:, None]
    w = jnp.where(jnp.isfinite(vals), w, 0.0)  # fewer than q candidates in the class
    return jnp.zeros((n_syn,), jnp.float32).at[idx.ravel()].add(w.ravel())


def top_q_votes(
    priv_emb: jax.Array,
    priv_label: jax.Array,
    syn_emb: jax.Array,
    syn_label: jax.Array,
    *,
    q: int,
    priv_mask: jax.Array | None = None,
    syn_mask: jax.Array | None = None,
    block_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Same-class Top-Q nearest and farthest vote histograms (ALGORITHM.md 2.4, H+ and H-).

    Args:
      priv_emb: (n_priv, d) unit-norm private embeddings.
      priv_label: (n_priv,) integer labels.
      syn_emb: (n_syn, d) unit-norm synthetic embeddings.
      syn_label: (n_syn,) integer labels.
      q: votes per private sample and histogram (static).
      priv_mask: (n_priv,) bool, False for padded rows (they cast no votes). Default all True.
      syn_mask: (n_syn,) bool, False for padded rows (they get no votes). Default all True.
      block_size: if set (static), stream the synthetic axis in blocks of this many rows.

    Returns:
      (nearest_hist, farthest_hist), each (n_syn,) float32. A private sample whose class has
      c < q valid candidates gives only the first c weights.
    """
    vote_weights(q)
    chex.assert_rank([priv_emb, syn_emb, priv_label, syn_label], [2, 2, 1, 1])
    chex.assert_equal_shape_prefix([priv_emb, priv_label], 1)
    chex.assert_equal_shape_prefix([syn_emb, syn_label], 1)
    chex.assert_equal_shape_suffix([priv_emb, syn_emb], 1)
    n_priv, n_syn = priv_emb.shape[0], syn_emb.shape[0]
    priv_mask = jnp.ones((n_priv,), bool) if priv_mask is None else priv_mask.astype(bool)
    syn_mask = jnp.ones((n_syn,), bool) if syn_mask is None else syn_mask.astype(bool)
    chex.assert_shape(priv_mask, (n_priv,))
    chex.assert_shape(syn_mask, (n_syn,))
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be None or >= 1, got {block_size}")
    priv_emb = priv_emb.astype(jnp.float32)
    syn_emb = syn_emb.astype(jnp.float32)

    if block_size is None or block_size >= n_syn:
        near, far = _block_top_q(priv_emb, priv_label, syn_emb, syn_label, syn_mask, 0, q)
    else:
        near, far = _streamed_top_q(
            priv_emb, priv_label, syn_emb, syn_label, syn_mask, q, block_size
        )
    return _histogram(*near, priv_mask, n_syn), _histogram(*far, priv_mask, n_syn)


def top_q_votes_parties(
    priv_emb: jax.Array,
    priv_label: jax.Array,
    syn_emb: jax.Array,
    syn_label: jax.Array,
    *,
    q: int,
    priv_mask: jax.Array | None = None,
    syn_mask: jax.Array | None = None,
    block_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Per-party histograms (ALGORITHM.md 2.5): ``top_q_votes`` vmapped over a party axis.

    Args:
      priv_emb: (num_parties, n_priv, d); priv_label and priv_mask: (num_parties, n_priv).
      syn_emb, syn_label, syn_mask, q, block_size: as in ``top_q_votes`` (shared by parties).

    Returns:
      (nearest, farthest), each (num_parties, n_syn) float32.
    """
    chex.assert_rank([priv_emb, priv_label], [3, 2])
    if priv_mask is None:
        priv_mask = jnp.ones(priv_label.shape, bool)
    per_party = lambda e, lab, m: top_q_votes(
        e, lab, syn_emb, syn_label, q=q, priv_mask=m, syn_mask=syn_mask, block_size=block_size
    )
    return jax.vmap(per_party)(priv_emb, priv_label, priv_mask)
