"""Per-class top-S selection of good (G_c) and bad (B_c) synthetic samples (docs/method.md §2.6).

Default: rank the raw noisy counts inside each class. ``compat=True`` reproduces the original
code: normalise globally, mask to the class, add 1e-15, renormalise and rank over all entries;
when the noisy class sum is negative this reverses the ranking (the original's sign flip).

Example::

    sel = select_contrastive(noisy_near, noisy_far, syn_label, syn_mask, num_classes=2, s=8)
    sel.good_idx  # (2, 8) row ids of the top-8 nearest-voted samples per class
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

_EPS = 1e-15


class Selection(NamedTuple):
    """Selected row ids per class; ``*_valid`` is False where a class had fewer than s rows."""

    good_idx: jax.Array  # (num_classes, s) int32, from the nearest histogram
    good_valid: jax.Array  # (num_classes, s) bool
    bad_idx: jax.Array  # (num_classes, s) int32, from the farthest histogram
    bad_valid: jax.Array  # (num_classes, s) bool


def _class_scores(noisy_hist, in_class, syn_mask, compat):
    """Scores (num_classes, n) to rank, -inf where a row may not be chosen."""
    if not compat:
        return jnp.where(in_class, noisy_hist[None, :], -jnp.inf)
    h = jnp.where(syn_mask, noisy_hist + _EPS, 0.0)
    v = h / h.sum()
    vc = jnp.where(in_class, v[None, :], 0.0) + _EPS
    vc = vc / jnp.where(syn_mask[None, :], vc, 0.0).sum(axis=1, keepdims=True)
    return jnp.where(syn_mask[None, :], vc, -jnp.inf)


def top_s_per_class(
    noisy_hist: jax.Array,
    syn_label: jax.Array,
    syn_mask: jax.Array | None = None,
    *,
    num_classes: int,
    s: int,
    compat: bool = False,
    exclude: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Indices of the s highest-ranked rows of each class.

    Args:
      noisy_hist: (n,) float noisy vote counts.
      syn_label: (n,) int labels in [0, num_classes).
      syn_mask: (n,) bool, False for padded rows (never chosen). Default all True.
      num_classes: number of classes C (static).
      s: rows per class S (static), s <= n.
      compat: reproduce the original normalise-then-rank (incl. its sign flip and the
        possibility of choosing rows outside the class).
      exclude: (C, n) bool, rows that class c may not choose (e.g. its good set).

    Returns:
      (idx, valid): (C, s) int32 row ids in decreasing rank, and (C, s) bool (False where the
      class had fewer than s eligible rows; the id there is meaningless).
    """
    chex.assert_rank([noisy_hist, syn_label], 1)
    chex.assert_equal_shape([noisy_hist, syn_label])
    n = noisy_hist.shape[0]
    if not 1 <= s <= n:
        raise ValueError(f"s must be in [1, n={n}], got {s}")
    syn_mask = jnp.ones((n,), bool) if syn_mask is None else syn_mask.astype(bool)
    classes = jnp.arange(num_classes, dtype=syn_label.dtype)
    in_class = (syn_label[None, :] == classes[:, None]) & syn_mask[None, :]
    scores = _class_scores(noisy_hist, in_class, syn_mask, compat)
    if exclude is not None:
        scores = jnp.where(exclude, -jnp.inf, scores)
    vals, idx = jax.lax.top_k(scores, s)
    return idx.astype(jnp.int32), jnp.isfinite(vals)


def select_contrastive(
    noisy_nearest: jax.Array | None,
    noisy_farthest: jax.Array | None,
    syn_label: jax.Array,
    syn_mask: jax.Array | None = None,
    *,
    num_classes: int,
    s: int,
    compat: bool = False,
) -> Selection:
    """G_c from the nearest and B_c from the farthest noisy histogram, for every class c.

    G_c and B_c are disjoint: B_c is ranked among the class's rows not in G_c, so a class
    with fewer than 2s rows gets a smaller (valid-flagged) B_c rather than the same texts as
    both good and bad examples. ``compat=True`` keeps the original's independent rankings.
    A histogram that was not released (None) selects nothing: its ids and valid flags have
    shape (num_classes, 0).
    """

    def pick(hist, exclude=None):
        if hist is None:
            return jnp.zeros((num_classes, 0), jnp.int32), jnp.zeros((num_classes, 0), bool)
        hist = jnp.asarray(hist, jnp.float32)
        return top_s_per_class(
            hist,
            syn_label,
            syn_mask,
            num_classes=num_classes,
            s=s,
            compat=compat,
            exclude=exclude,
        )

    good = pick(noisy_nearest)
    exclude = None
    if not compat and noisy_nearest is not None:
        n = syn_label.shape[0]
        rows = jnp.arange(num_classes)[:, None]
        exclude = jnp.zeros((num_classes, n), bool).at[rows, good[0]].max(good[1])
    bad = pick(noisy_farthest, exclude)
    return Selection(good[0], good[1], bad[0], bad[1])
