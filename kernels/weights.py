"""PLM importance scores and next-round shares from the noisy nearest votes (docs/method.md §2.7).

``compat=True`` is the original formula: score_k = (sum of globally normalised votes of PLM k)
* n / n_k, which inherits the sign flip of a negative noisy total. The default is the robust
variant: score_k = mean of max(H, 0) over PLM k's rows divided by the overall mean. Shares are
softmax(score / tau); the integer allocation is done on the host
(``wasp_jax.budget.allocate_budget``).

Example::

    shares = plm_shares(plm_scores(noisy_near, plm_id, syn_mask, num_plms=6), tau=1.0)
"""

import chex
import jax
import jax.numpy as jnp

_EPS = 1e-15


def plm_scores(
    noisy_hist: jax.Array,
    plm_id: jax.Array,
    syn_mask: jax.Array | None = None,
    *,
    num_plms: int,
    compat: bool = False,
) -> jax.Array:
    """Per-PLM vote score (1 means "as popular as average").

    Args:
      noisy_hist: (n,) float noisy nearest votes H~+.
      plm_id: (n,) int in [0, num_plms), the PLM that generated each row.
      syn_mask: (n,) bool, False for padded rows (ignored). Default all True.
      num_plms: K (static).
      compat: use the original formula instead of the robust one.

    Returns:
      (num_plms,) float32 scores; a PLM with no rows scores 0. Robust scores are all 1 when no
      row has a positive count.
    """
    chex.assert_rank([noisy_hist, plm_id], 1)
    chex.assert_equal_shape([noisy_hist, plm_id])
    n_rows = noisy_hist.shape[0]
    syn_mask = jnp.ones((n_rows,), bool) if syn_mask is None else syn_mask.astype(bool)
    hist = noisy_hist.astype(jnp.float32)
    seg = lambda x: jax.ops.segment_sum(x, plm_id, num_segments=num_plms)
    count = seg(syn_mask.astype(jnp.float32))
    n = count.sum()
    if compat:
        h = jnp.where(syn_mask, hist + _EPS, 0.0)
        mass = seg(h / h.sum())
        score = mass * n / jnp.maximum(count, 1.0)
    else:
        pos = jnp.where(syn_mask, jnp.maximum(hist, 0.0), 0.0)
        overall = pos.sum() / n
        per_plm = seg(pos) / jnp.maximum(count, 1.0)
        score = jnp.where(overall > 0, per_plm / jnp.where(overall > 0, overall, 1.0), 1.0)
    return jnp.where(count > 0, score, 0.0)


def plm_shares(scores: jax.Array, *, tau: float | jax.Array = 1.0) -> jax.Array:
    """softmax(scores / tau), the fraction of the next round's budget for each PLM."""
    chex.assert_rank(scores, 1)
    return jax.nn.softmax(scores / tau)
