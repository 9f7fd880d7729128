"""Clean statistics that WASP+ releases after aggregation (docs/method.md §9).

Every function here maps private rows to a small vector that sums one bounded contribution per
private record; the vote stage (``wasp_jax.pipeline.stages.vote_plus``) noises it before it leaves.

* ``segment_totals``: a per-sample vote histogram summed per segment of candidates (the PLM
  that wrote each candidate, or its cluster). One record moves at most sum(w) votes into one
  segment per histogram.
* ``usefulness_counts``: for each of K linear probes (one per PLM, fitted on that PLM's
  synthetic rows only), how many private records it classifies correctly: each record adds a
  0/1 K-vector.
* ``class_sums``: per class, the sum of the private embeddings, each clipped to norm <= 1.

Example::

    totals = segment_totals(hist, plm_id, num_segments=6)          # (6,)
    counts = usefulness_counts(e_priv, y_priv, kernels, biases)    # (K,)
"""

import chex
import jax
import jax.numpy as jnp


def segment_totals(
    hist: jax.Array, segment_id: jax.Array, syn_mask=None, *, num_segments: int
) -> jax.Array:
    """(num_segments,) sums of ``hist`` over the rows of each segment (masked rows excluded)."""
    chex.assert_rank([hist, segment_id], 1)
    chex.assert_equal_shape([hist, segment_id])
    h = hist.astype(jnp.float32)
    if syn_mask is not None:
        h = jnp.where(syn_mask.astype(bool), h, 0.0)
    return jax.ops.segment_sum(h, segment_id, num_segments=num_segments)


def usefulness_counts(
    priv_emb: jax.Array,
    priv_label: jax.Array,
    kernels: jax.Array,
    biases: jax.Array,
    priv_mask=None,
) -> jax.Array:
    """(K,) number of private records each of the K linear probes classifies correctly.

    Args:
      priv_emb: (M, d) private embeddings.
      priv_label: (M,) int labels.
      kernels: (K, d, C) probe weights; biases: (K, C).
      priv_mask: (M,) bool, rows that count (default all).
    """
    chex.assert_rank([priv_emb, priv_label, kernels, biases], [2, 1, 3, 2])
    logits = jnp.einsum("md,kdc->kmc", priv_emb.astype(jnp.float32), kernels) + biases[:, None]
    correct = (logits.argmax(-1) == priv_label[None]).astype(jnp.float32)
    if priv_mask is not None:
        correct = correct * priv_mask.astype(jnp.float32)[None]
    return correct.sum(axis=1)


def clip_rows(x: jax.Array, max_norm: float = 1.0) -> jax.Array:
    """Rows of ``x`` scaled down to L2 norm <= max_norm (rows already inside are unchanged)."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))


def class_sums(priv_emb: jax.Array, priv_label: jax.Array, priv_mask=None, *, num_classes: int):
    """(C, d) per-class sums of the private embeddings, each row clipped to norm <= 1."""
    chex.assert_rank([priv_emb, priv_label], [2, 1])
    x = clip_rows(priv_emb.astype(jnp.float32))
    if priv_mask is not None:
        x = x * priv_mask.astype(jnp.float32)[:, None]
    return jax.ops.segment_sum(x, priv_label, num_segments=num_classes)
