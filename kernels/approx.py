"""Approximate Top-Q candidate search for accelerators, with exact re-ranking.

On TPU (and GPU) `jax.lax.approx_max_k` finds the largest entries of each row by a partial
reduction that keeps each true top entry with probability ``recall_target``, much faster
than an exact `top_k` over a long row. Here it proposes ``oversample * q`` candidates per
private row and direction; their exact similarities are then re-ranked and the best ``q``
kept, so every returned vote is a true same-class candidate with its exact similarity, and
only the *membership* of the top q can differ from the exact search (measured by recall).
On CPU `approx_max_k` is exact, so there this path equals the exact one.

It works on the whole (n_priv, n_syn) similarity matrix (no streaming), so it suits the
accelerator-sized cases; `kernels.voting.top_q_candidates` remains the exact, streamed path.
"""

import jax
import jax.numpy as jnp
from wasp_jax.kernels.voting import _check_inputs

_NEG_INF = -jnp.inf


def approx_top_q_candidates(
    priv_emb,
    priv_label,
    syn_emb,
    syn_label,
    *,
    q: int,
    syn_mask=None,
    recall_target: float = 0.95,
    oversample: int = 4,
):
    """Like ``top_q_candidates`` (same arguments and returns), by approximate search.

    Args:
      recall_target: per-entry recall asked of `jax.lax.approx_max_k` (static).
      oversample: candidates proposed per kept vote (static), re-ranked exactly.
    """
    if not 0.0 < recall_target <= 1.0 or oversample < 1:
        raise ValueError("need 0 < recall_target <= 1 and oversample >= 1")
    priv_emb, priv_label, syn_emb, syn_label, syn_mask = _check_inputs(
        priv_emb, priv_label, syn_emb, syn_label, syn_mask, q, None
    )
    sim = jnp.matmul(priv_emb, syn_emb.T, precision=jax.lax.Precision.HIGHEST)
    ok = (priv_label[:, None] == syn_label[None, :]) & syn_mask[None, :]
    k = min(q * oversample, syn_emb.shape[0])

    def one(oriented):
        vals, idx = jax.lax.approx_max_k(
            jnp.where(ok, oriented, _NEG_INF), k, recall_target=recall_target
        )
        best, at = jax.lax.top_k(vals, min(q, k))
        idx = jnp.take_along_axis(idx, at, axis=1).astype(jnp.int32)
        if best.shape[1] < q:  # fewer synthetic rows than q: pad with non-votes
            pad = q - best.shape[1]
            best = jnp.pad(best, ((0, 0), (0, pad)), constant_values=_NEG_INF)
            idx = jnp.pad(idx, ((0, 0), (0, pad)))
        return best, idx

    return one(sim), one(-sim)
