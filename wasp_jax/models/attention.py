"""Attention for the shared layers: masks, grouped-query attention (optionally over a shared
prefix stored once per prompt) and the encoder's bidirectional attention.

Decoder cache layout: ``{"k", "v"}: [L, B, S, Hkv, Dh]``; a shared prefix is stored with heads
before slots, ``[L, Bp, Hkv, Sp, Dh]`` (see :func:`prefix_from_cache`).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

# Large finite negative: a fully masked row (a left-pad query) then yields a finite
# uniform average instead of NaN; its output is never used.
_MASK_VALUE = -1e30
# The encoder's value (that of the Hugging Face BERT it reproduces); a padding row of an
# encoder batch is fully masked too and likewise averages uniformly.
_ENCODER_MASK_VALUE = -1e9


def attention_mask(
    cache_index: jax.Array | int, num_queries: int, kv_mask: jax.Array, window: int | None = None
) -> jax.Array:
    """Which cache slots each query of the chunk may attend to.

    Query ``t`` sits in slot ``q = cache_index + t``; it sees slot ``s`` iff
    ``kv_mask[b, s]``, ``s <= q`` and, with a window, ``q - s < window``.

    Args:
      cache_index: int scalar (may be traced), first slot of this chunk.
      num_queries: T, static.
      kv_mask: bool [B, S]; True where a slot holds (or, for this chunk, will hold) a
        real token.
      window: sliding window length, or None for full causal attention.

    Returns:
      bool [B, T, S].
    """
    chex.assert_rank(kv_mask, 2)
    s = jnp.arange(kv_mask.shape[1])[None, :]
    q = cache_index + jnp.arange(num_queries)[:, None]
    ok = s <= q
    if window is not None:
        ok = ok & (q - s < window)
    return ok[None] & kv_mask[:, None, :]


def gqa_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array,
    scale: float,
    softcap=None,
    prefix: tuple[jax.Array, jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """Grouped-query attention, optionally over a shared prefix as well.

    With ``prefix``, the ``B`` query rows form ``Bp`` groups of ``G = B // Bp`` consecutive
    rows; group ``p`` also attends to prefix row ``p``, whose keys and values are stored once
    (not once per sample row) and read once per step. The softmax runs over prefix and own
    slots together, so the result equals attention over the concatenated cache.

    Args:
      q: [B, T, H, Dh]; k, v: [B, S, Hkv, Dh] with H % Hkv == 0.
      mask: bool [B, T, S].
      scale: multiplier of the scores (usually Dh ** -0.5).
      softcap: optional tanh soft-capping of the scores (Gemma 2).
      prefix: optional ``(k [Bp, Hkv, Sp, Dh], v [Bp, Hkv, Sp, Dh], mask bool [Bp, T, Sp])``.

    Returns:
      [B, T, H, Dh] in q's dtype.
    """
    b, t, h, dh = q.shape
    hkv = k.shape[2]
    g = h // hkv
    qg = q.reshape(b, t, hkv, g, dh)

    def finish(raw, keep):
        raw = raw * scale
        if softcap is not None:
            raw = jnp.tanh(raw / softcap) * softcap
        return jnp.where(keep, raw, _MASK_VALUE)

    scores = jnp.einsum("btkgd,bskd->bktgs", qg, k, preferred_element_type=jnp.float32)
    scores = finish(scores, mask[:, None, :, None])
    if prefix is not None:
        pk, pv, pmask = prefix
        bp, sp = pk.shape[0], pk.shape[2]
        grp = b // bp
        qp = qg.reshape(bp, grp, t, hkv, g, dh)
        ps = jnp.einsum("pctkgd,pksd->pcktgs", qp, pk, preferred_element_type=jnp.float32)
        ps = finish(ps, pmask[:, None, None, :, None])
        scores = jnp.concatenate([ps.reshape(b, hkv, t, g, sp), scores], axis=-1)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    if prefix is None:
        out = jnp.einsum("bktgs,bskd->btkgd", probs, v, preferred_element_type=jnp.float32)
    else:
        f32 = jnp.float32
        pp = probs[..., :sp].reshape(bp, grp, hkv, t, g, sp)
        out = jnp.einsum("bktgs,bskd->btkgd", probs[..., sp:], v, preferred_element_type=f32)
        out_p = jnp.einsum("pcktgs,pksd->pctkgd", pp, pv, preferred_element_type=f32)
        out = out + out_p.reshape(b, t, hkv, g, dh)
    return out.reshape(b, t, h, dh).astype(q.dtype)


def prefix_attention_mask(
    prefix_mask: jax.Array, cache_index: jax.Array | int, num_queries: int, window: int | None
) -> jax.Array:
    """Which prefix slots each query of a chunk after the prefix may attend to.

    The prefix holds slots ``[0, Sp)``; own-cache slot ``j`` is global slot ``Sp + j``, so
    query ``t`` sits at ``Sp + cache_index + t`` and, with a window, sees prefix slot ``s``
    iff ``q - s < window``.

    Args:
      prefix_mask: bool [Bp, Sp], True where a prefix slot holds a real token.
      cache_index: first own-cache slot of this chunk (may be traced).
      num_queries: T, static.
      window: sliding window length, or None.

    Returns:
      bool [Bp, T, Sp].
    """
    chex.assert_rank(prefix_mask, 2)
    sp = prefix_mask.shape[1]
    ok = jnp.ones((num_queries, sp), bool)
    if window is not None:
        s = jnp.arange(sp)[None, :]
        q = sp + cache_index + jnp.arange(num_queries)[:, None]
        ok = q - s < window
    return ok[None] & prefix_mask[:, None, :]


def prefix_parts(
    prefix: dict[str, jax.Array] | None,
    cache_index: jax.Array | int,
    num_queries: int,
    window: int | None,
) -> tuple[jax.Array | None, tuple[jax.Array, jax.Array] | None]:
    """A model call's view of an optional shared prefix.

    Returns ``(mask [Bp, T, Sp], (k, v))`` with k/v ``[L, Bp, Hkv, Sp, Dh]`` to be scanned
    over layers, or ``(None, None)`` without a prefix.
    """
    if prefix is None:
        return None, None
    mask = prefix_attention_mask(prefix["mask"], cache_index, num_queries, window)
    return mask, (prefix["k"], prefix["v"])


def prefix_from_cache(cache: dict[str, jax.Array], mask: jax.Array) -> dict[str, jax.Array]:
    """A prefilled cache ``[L, Bp, Sp, Hkv, Dh]`` as a shared prefix (heads before slots).

    The transpose runs once per prompt; every decode step then reads each prefix row as
    contiguous ``[Sp, Dh]`` blocks per head.
    """
    return {
        "k": jnp.swapaxes(cache["k"], 2, 3),
        "v": jnp.swapaxes(cache["v"], 2, 3),
        "mask": mask,
    }


def encoder_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, scale: float
) -> jax.Array:
    """Bidirectional multi-head attention over a padded batch (no cache, no GQA).

    Unlike :func:`gqa_attention` the queries are scaled before the product, and masked
    scores are ``-1e9``: the rounding of the BERT checkpoints' reference implementation.

    Args:
      q, k, v: [B, T, H, Dh].
      mask: bool, broadcastable to [B, H, T, T]; ``[B, 1, 1, T]`` masks padding keys.
      scale: multiplier of the queries (Dh ** -0.5).

    Returns:
      [B, T, H, Dh].
    """
    s = jnp.einsum("bqhd,bkhd->bhqk", q * scale, k)
    s = jnp.where(mask, s, _ENCODER_MASK_VALUE)
    e = jnp.exp(s - jax.lax.stop_gradient(s.max(axis=-1, keepdims=True)))
    out = jnp.einsum("bhqk,bkhd->bqhd", e, v)
    return out / jnp.swapaxes(e.sum(axis=-1), 1, 2)[..., None]
