"""Top-Q nearest/farthest voting with geometric weights (docs/method.md §2.4).

Every valid private sample votes for the ``q`` synthetic samples of its own class that are
nearest to it (weights 1, 1/2, ..., 2**(1-q)) and, separately, for the ``q`` farthest ones.
Embeddings are unit-norm, so the largest inner product is the smallest L2 distance.

How it stays near the matmul cost on CPU: the synthetic rows are visited in label order (valid
rows first), so each class is a contiguous range of positions and every group of ``_GROUP``
consecutive positions lies inside a class except at most two per private sample (the ends of
its class range). Per group only an unmasked max and min of the similarities are taken; class
masking, ``top_k`` and gathers then work on (n_priv, n / _GROUP) group values plus the q best
groups' members and the two boundary groups, never elementwise on (n_priv, n). The search is
exact: the q best elements lie in the q best whole groups or in a boundary group.

The positions are processed as one block or streamed in blocks of ``block_size`` rows (rounded
up to a multiple of ``_GROUP``) with a running top-q merge, so memory is O(n_priv * (q + block))
instead of O(n_priv * n_syn). Results do not depend on the blocking (up to exact ties).

Example::

    nearest, farthest = top_q_votes(priv_emb, priv_label, syn_emb, syn_label, q=8)
"""

import math

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


def vote_l2_sensitivity(q: int, num_histograms: int = 2, *, replace_one: bool = False) -> float:
    """L2 norm of what one private record can change in ``num_histograms`` vote histograms.

    The record adds ``vote_weights(q)`` to each histogram (||w||_2 each, added in quadrature
    over the histograms); replace-one swaps two such non-negative contributions, at worst
    disjoint: sqrt(2) times more. ``wasp_jax.privacy.sensitivity.l2_sensitivity`` and the
    config's check of a sensitivity override both use this one formula.
    """
    w = vote_weights(q)
    bad = isinstance(num_histograms, bool) or not isinstance(num_histograms, int | np.integer)
    if bad or num_histograms < 1:
        raise ValueError(f"num_histograms must be an integer >= 1, got {num_histograms!r}")
    per_hist = float(np.sqrt(np.sum(w * w)))
    return per_hist * math.sqrt(int(num_histograms)) * (math.sqrt(2.0) if replace_one else 1.0)


def _label_layout(syn_label, syn_mask):
    """Visiting order (valid rows first, by label) and each position's label key.

    Returns (order, key, n_valid): key is the label at valid positions and the dtype's max at
    invalid ones, so that a class is the range searchsorted(key, c) of positions.
    """
    n = syn_label.shape[0]
    order = jnp.lexsort((syn_label, ~syn_mask)).astype(jnp.int32)
    n_valid = syn_mask.sum(dtype=jnp.int32)
    key = jnp.where(jnp.arange(n) < n_valid, syn_label[order], jnp.iinfo(syn_label.dtype).max)
    return order, key, n_valid


def _class_range(priv_label, key, n_valid):
    start = jnp.searchsorted(key, priv_label, side="left").astype(jnp.int32)
    end = jnp.searchsorted(key, priv_label, side="right").astype(jnp.int32)
    return jnp.minimum(start, n_valid), jnp.minimum(end, n_valid)


def _block_candidates(sim, group_val, pos0, start, end, q):
    """Top-q of one block for one direction (values already oriented: larger is better).

    Args:
      sim: (m, B) oriented similarities of the block's positions pos0 .. pos0 + B - 1.
      group_val: (m, B // _GROUP) oriented per-group maxima.
      pos0: first position of the block (traced int).
      start, end: (m,) class range [start, end) of each private row.

    Returns:
      (values, positions), each (m, k): -inf values mark non-candidates.
    """
    m, width = sim.shape
    num_groups = width // _GROUP
    lane = jnp.arange(_GROUP, dtype=jnp.int32)
    g_first = pos0 + jnp.arange(num_groups, dtype=jnp.int32) * _GROUP
    whole = (g_first[None, :] >= start[:, None]) & (g_first[None, :] + _GROUP <= end[:, None])
    k_groups = min(q, num_groups)
    _, g_idx = jax.lax.top_k(jnp.where(whole, group_val, _NEG_INF), k_groups)
    g_ok = jnp.take_along_axis(whole, g_idx, axis=1)
    local = (g_idx * _GROUP)[:, :, None] + lane  # (m, k_groups, G)
    vals = jnp.take_along_axis(sim, local.reshape(m, -1), axis=1)
    vals = jnp.where(jnp.repeat(g_ok, _GROUP, axis=1), vals, _NEG_INF)
    pos = pos0 + local.reshape(m, -1)

    # The partial groups at both ends of each row's class range, element by element.
    first_g = start - start % _GROUP
    last_g = jnp.maximum(end - 1, start) - jnp.maximum(end - 1, start) % _GROUP
    ends = jnp.stack([first_g, jnp.where(last_g == first_g, -_GROUP, last_g)], axis=1)
    e_pos = (ends[:, :, None] + lane).reshape(m, 2 * _GROUP)
    e_local = e_pos - pos0
    in_block = (e_local >= 0) & (e_local < width)
    in_class = (e_pos >= start[:, None]) & (e_pos < end[:, None])
    e_whole = jnp.repeat((ends >= start[:, None]) & (ends + _GROUP <= end[:, None]), _GROUP, axis=1)
    e_vals = jnp.take_along_axis(sim, jnp.clip(e_local, 0, width - 1), axis=1)
    e_vals = jnp.where(in_block & in_class & ~e_whole, e_vals, _NEG_INF)

    vals = jnp.concatenate([vals, e_vals], axis=1)
    pos = jnp.concatenate([pos, e_pos], axis=1)
    best, at = jax.lax.top_k(vals, min(q, vals.shape[1]))
    return best, jnp.take_along_axis(pos, at, axis=1)


def _block_top_q(priv_emb, syn_emb, order, pos0, width, start, end, q):
    """Nearest and farthest candidates among positions pos0 .. pos0 + width - 1."""
    n_priv, d = priv_emb.shape
    if width >= syn_emb.shape[0] and n_priv < d:
        # One block with fewer private rows than dimensions (the paper's 100 x 384): permuting
        # the (n_priv, n) similarities moves fewer bytes than gathering the (n, d) rows.
        sim = jnp.matmul(priv_emb, syn_emb.T, precision=jax.lax.Precision.HIGHEST)
        sim = jnp.take(sim, order[:width], axis=1, mode="clip")
    else:
        rows = jax.lax.dynamic_slice_in_dim(order, pos0, width)
        sim = jnp.matmul(priv_emb, syn_emb[rows].T, precision=jax.lax.Precision.HIGHEST)
    grouped = sim.reshape(sim.shape[0], -1, _GROUP)
    near = _block_candidates(sim, grouped.max(axis=-1), pos0, start, end, q)
    far = _block_candidates(-sim, -grouped.min(axis=-1), pos0, start, end, q)
    return near, far


def _merge(running, new, q):
    """Keeps the q best of the running (m, q) and new (m, k) candidates."""
    vals = jnp.concatenate([running[0], new[0]], axis=1)
    pos = jnp.concatenate([running[1], new[1]], axis=1)
    best, at = jax.lax.top_k(vals, q)
    return best, jnp.take_along_axis(pos, at, axis=1)


def _search(priv_emb, priv_label, syn_emb, syn_label, syn_mask, q, block_size):
    """Top-q (values, original row ids) for nearest and farthest, each (n_priv, q)."""
    n_priv, n_syn = priv_emb.shape[0], syn_emb.shape[0]
    order, key, n_valid = _label_layout(syn_label, syn_mask)
    start, end = _class_range(priv_label, key, n_valid)
    width = -(-(n_syn if block_size is None else min(block_size, n_syn)) // _GROUP) * _GROUP
    num_blocks = -(-n_syn // width)
    # Positions past n_syn read row 0 but lie outside every class range, so never vote.
    order = jnp.pad(order, (0, num_blocks * width - n_syn))
    empty = (jnp.full((n_priv, q), _NEG_INF, jnp.float32), jnp.zeros((n_priv, q), jnp.int32))

    def body(b, carry):
        near, far = _block_top_q(priv_emb, syn_emb, order, b * width, width, start, end, q)
        return _merge(carry[0], near, q), _merge(carry[1], far, q)

    if num_blocks == 1:
        near, far = body(0, (empty, empty))
    else:
        near, far = jax.lax.fori_loop(0, num_blocks, body, (empty, empty))
    to_rows = lambda c: (c[0], order[c[1]])
    return to_rows(near), to_rows(far)


def _check_inputs(priv_emb, priv_label, syn_emb, syn_label, syn_mask, q, block_size):
    vote_weights(q)
    chex.assert_rank([priv_emb, syn_emb, priv_label, syn_label], [2, 2, 1, 1])
    chex.assert_equal_shape_prefix([priv_emb, priv_label], 1)
    chex.assert_equal_shape_prefix([syn_emb, syn_label], 1)
    chex.assert_equal_shape_suffix([priv_emb, syn_emb], 1)
    n_syn = syn_emb.shape[0]
    syn_mask = jnp.ones((n_syn,), bool) if syn_mask is None else jnp.asarray(syn_mask, bool)
    chex.assert_shape(syn_mask, (n_syn,))
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be None or >= 1, got {block_size}")
    return (
        jnp.asarray(priv_emb, jnp.float32),
        jnp.asarray(priv_label),
        jnp.asarray(syn_emb, jnp.float32),
        jnp.asarray(syn_label),
        syn_mask,
    )


def top_q_candidates(
    priv_emb, priv_label, syn_emb, syn_label, *, q, syn_mask=None, block_size=None
):
    """Each private row's q nearest and q farthest same-class synthetic rows, best first.

    Args: as ``top_q_votes``.

    Returns:
      ((near_val, near_idx), (far_val, far_idx)), each (n_priv, q): similarities (negated for
      farthest; -inf where the class has fewer than q candidates) and int32 row ids.
    """
    args = _check_inputs(priv_emb, priv_label, syn_emb, syn_label, syn_mask, q, block_size)
    return _search(*args, q, block_size)


def merge_candidates(vals, idx, *, q):
    """The q best of several candidate sets concatenated on the last axis, best first."""
    best, at = jax.lax.top_k(vals, q)
    return best, jnp.take_along_axis(idx, at, axis=-1)


def candidate_histogram(vals, idx, *, n_syn, priv_mask=None, offset=0):
    """Scatters the geometric weights of ranked candidates into an (n_syn,) float32 histogram.

    Args:
      vals, idx: (n_priv, k) ranked candidates (-inf values cast no vote).
      n_syn: histogram length (static).
      priv_mask: (n_priv,) bool, rows that vote. Default all.
      offset: the histogram covers row ids offset .. offset + n_syn - 1; others are dropped.
    """
    k = vals.shape[1]
    w = jnp.broadcast_to(jnp.asarray(vote_weights(k), jnp.float32), vals.shape)
    if priv_mask is not None:
        w = w * jnp.asarray(priv_mask, jnp.float32)[:, None]
    w = jnp.where(jnp.isfinite(vals), w, 0.0)  # fewer than q candidates in the class
    local = (idx - offset).ravel()
    # Negative ids would wrap around, so send every out-of-range id past the end to be dropped.
    local = jnp.where((local >= 0) & (local < n_syn), local, n_syn)
    return jnp.zeros((n_syn,), jnp.float32).at[local].add(w.ravel(), mode="drop")


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
    """Same-class Top-Q nearest and farthest vote histograms (docs/method.md §2.4, H+ and H-).

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
    n_syn = syn_emb.shape[0]
    priv_mask = None if priv_mask is None else jnp.asarray(priv_mask, bool)
    if priv_mask is not None:
        chex.assert_shape(priv_mask, (priv_emb.shape[0],))
    near, far = top_q_candidates(
        priv_emb, priv_label, syn_emb, syn_label, q=q, syn_mask=syn_mask, block_size=block_size
    )
    return (
        candidate_histogram(*near, n_syn=n_syn, priv_mask=priv_mask),
        candidate_histogram(*far, n_syn=n_syn, priv_mask=priv_mask),
    )


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
    """Per-party histograms (docs/method.md §2.5): ``top_q_votes`` vmapped over a party axis.

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
