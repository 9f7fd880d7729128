"""Shared model pieces: norms, activations, rotary embeddings, attention, stacked weights.

Everything here is a pure array function (no parameters of its own) so that the decoder
and encoder modules can keep their weights stacked along a leading layer axis and run the
layers with one ``lax.scan``: a 30-layer model compiles once per input shape, not 30 times.

Decoder cache layout: ``{"k": [L, B, S, Hkv, Dh], "v": [L, B, S, Hkv, Dh]}``. A call with a
chunk of ``T`` tokens writes slots ``[cache_index, cache_index + T)``. The encoder (BERT)
attends bidirectionally over its padded batch, without a cache (:func:`encoder_attention`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Large finite negative: a fully masked row (a left-pad query) then yields a finite
# uniform average instead of NaN; its output is never used.
_MASK_VALUE = -1e30
# The encoder's value (that of the Hugging Face BERT it reproduces); a padding row of an
# encoder batch is fully masked too and likewise averages uniformly.
_ENCODER_MASK_VALUE = -1e9

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation of a config's ``hidden_act`` ("gelu" is exact, "gelu_*" use tanh)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; supported: {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """RMSNorm in float32, ``x * rsqrt(mean(x^2) + eps) * weight``; returns ``x.dtype``.

    ``weight`` is the multiplier as applied (Gemma's ``1 + w`` must be folded in by the
    loader).
    """
    xf = x.astype(jnp.float32)
    y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    return (y * weight.astype(jnp.float32)).astype(x.dtype)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """LayerNorm with bias in float32, ``(x - mean) * rsqrt(var + eps) * scale + bias``.

    Returns ``x.dtype``. Used by GPT-2 and the BERT encoder.
    """
    xf = x.astype(jnp.float32)
    mu = xf.mean(-1, keepdims=True)
    var = ((xf - mu) ** 2).mean(-1, keepdims=True)
    y = (xf - mu) * jax.lax.rsqrt(var + eps) * scale.astype(jnp.float32) + bias.astype(jnp.float32)
    return y.astype(x.dtype)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout with rate ``rate``; identity when ``key`` is None."""
    if key is None or rate <= 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


PRECISIONS = {"float32": None, "bfloat16": jnp.bfloat16}


def compute_dtype(precision: str):
    """The ``compute_dtype`` of a precision name ("float32" -> None, "bfloat16")."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def dense(x: jax.Array, w: jax.Array, compute_dtype=None, axes: int = 1) -> jax.Array:
    """``x @ w`` (x's last ``axes`` axes with w's first), optionally in a lower precision.

    With ``compute_dtype`` (e.g. ``jnp.bfloat16``) both operands are cast to it and the
    product accumulates in float32 (``preferred_element_type``), the mixed precision that
    AVX512-BF16/AMX CPUs, GPUs and TPUs run at up to twice the float32 rate; the result is
    float32. ``None`` computes in the operands' own dtype.
    """
    lead, k = x.shape[: x.ndim - axes], int(np.prod(x.shape[x.ndim - axes :]))
    out = w.shape[axes:]
    # As one 2-D product: XLA:CPU hands [M, K] x [K, N] to its multi-threaded matmul library,
    # while a rank-3 operand fell back to a single-threaded dot (docs/performance.md).
    x2, w2 = x.reshape(-1, k), w.reshape(k, -1)
    if compute_dtype is None:
        y = x2 @ w2
    else:
        y = jnp.matmul(
            x2.astype(compute_dtype), w2.astype(compute_dtype), preferred_element_type=jnp.float32
        ).astype(x.dtype)
    return y.reshape(*lead, *out)


def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None = None) -> np.ndarray:
    """Inverse RoPE frequencies [head_dim // 2], with optional HF-style ``rope_scaling``.

    Supported scalings: none/"default", "linear" (positions divided by ``factor``) and
    "llama3" (Llama 3.1 frequency-dependent interpolation).
    """
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / float(scaling["factor"])
    if kind == "llama3":
        factor = float(scaling["factor"])
        lo, hi = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * np.pi / inv
        smooth = np.clip((old_len / wavelen - lo) / (hi - lo), 0.0, 1.0)
        scaled = (1 - smooth) * inv / factor + smooth * inv
        return np.where(
            wavelen > old_len / lo, inv / factor, np.where(wavelen < old_len / hi, inv, scaled)
        )
    raise NotImplementedError(
        f"rope_scaling type {kind!r} is not supported (supported: default, linear, llama3)"
    )


def rope_tables(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """cos/sin tables for rotate-half RoPE.

    Args:
      positions: int [B, T].
      inv_freq: [Dh // 2] inverse frequencies (see :func:`rope_inv_freq`).

    Returns:
      (cos, sin), each float32 [B, T, Dh].
    """
    ang = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq, jnp.float32)
    ang = jnp.concatenate([ang, ang], axis=-1)
    return jnp.cos(ang), jnp.sin(ang)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate-half RoPE (Hugging Face layout). x [B, T, H, Dh]; cos/sin [B, T, Dh]."""
    half = x.shape[-1] // 2
    xf = x.astype(jnp.float32)
    rot = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
    y = xf * cos[:, :, None, :] + rot * sin[:, :, None, :]
    return y.astype(x.dtype)


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
    a = jax.nn.softmax(jnp.where(mask, s, _ENCODER_MASK_VALUE), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", a, v)


def write_and_read_cache(
    cache: jax.Array, new: jax.Array, layer: jax.Array, cache_index: jax.Array | int
) -> tuple[jax.Array, jax.Array]:
    """Writes ``new`` [B, T, Hkv, Dh] at ``[layer, :, cache_index:]``; returns (cache, layer slice).

    Updating the whole stacked cache in the scan carry (rather than emitting per-layer
    slices as scan outputs) keeps decoding from rewriting all S slots every step.
    """
    zero = jnp.zeros((), jnp.int32)
    idx = jnp.asarray(cache_index, jnp.int32)
    layer = jnp.asarray(layer, jnp.int32)
    cache = jax.lax.dynamic_update_slice(
        cache, new.astype(cache.dtype)[None], (layer, zero, idx, zero, zero)
    )
    return cache, jax.lax.dynamic_index_in_dim(cache, layer, axis=0, keepdims=False)


def scan_layers(
    layer_fn: Callable[..., tuple[jax.Array, jax.Array, jax.Array]],
    x: jax.Array,
    layer_params: dict[str, jax.Array] | Sequence[dict[str, jax.Array]],
    cache: dict[str, jax.Array],
    per_layer: Any = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Runs ``layer_fn(x, params_i, k_cache, v_cache, i, per_layer_i)`` over the layers.

    ``layer_params`` is either one dict of stacked ``[L, ...]`` weights, run with one
    ``lax.scan`` (one compiled layer), or a sequence of per-layer dicts of separate arrays,
    run as an unrolled Python loop. The second form is what decoding uses: inside a scan
    XLA:CPU copies each layer's weight slice before every product, which for a memory-bound
    decode step doubles the bytes moved (docs/performance.md).
    """
    if isinstance(layer_params, Sequence):
        k, v = cache["k"], cache["v"]
        for i, lp in enumerate(layer_params):
            extra = jax.tree.map(lambda a, i=i: a[i], per_layer)
            x, k, v = layer_fn(x, lp, k, v, i, extra)
        return x, {"k": k, "v": v}
    num_layers = next(iter(layer_params.values())).shape[0]

    def body(carry, xs):
        h, kc, vc = carry
        lp, i, extra = xs
        h, kc, vc = layer_fn(h, lp, kc, vc, i, extra)
        return (h, kc, vc), None

    xs = (layer_params, jnp.arange(num_layers, dtype=jnp.int32), per_layer)
    (x, k, v), _ = jax.lax.scan(body, (x, cache["k"], cache["v"]), xs)
    return x, {"k": k, "v": v}


def init_kv_cache(
    num_layers: int, batch_size: int, max_len: int, num_kv_heads: int, head_dim: int, dtype
) -> dict[str, jax.Array]:
    """Zero cache {"k", "v"} of shape [L, B, S, Hkv, Dh]."""
    shape = (num_layers, batch_size, max_len, num_kv_heads, head_dim)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


class Stacked(nnx.Module):
    """Per-layer weights stacked on a leading layer axis, one ``nnx.Param`` per name.

    Args:
      shapes: name -> per-layer shape (without the layer axis).
      num_layers: L.
      init: name -> ``(key, shape, dtype) -> array`` initialiser (random for tiny models;
        loaders overwrite the values).
      rngs: nnx RNG streams.
      dtype: parameter dtype.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], num_layers: int, init, *, rngs, dtype):
        self.names = tuple(shapes)
        for name, shape in shapes.items():
            value = init[name](rngs.params(), (num_layers, *shape), dtype)
            setattr(self, name, nnx.Param(value))

    def arrays(self) -> dict[str, jax.Array]:
        """The stacked weights as a plain dict (for ``lax.scan``)."""
        return {n: getattr(self, n)[...] for n in self.names}


def normal_init(std: float):
    """Initialiser drawing N(0, std^2)."""
    return lambda key, shape, dtype: (std * jax.random.normal(key, shape)).astype(dtype)


def fan_in_init(fan_in_axes: int = 1):
    """Initialiser N(0, 1/fan_in) where fan_in is the product of the dims after the layer axis."""

    def init(key, shape, dtype):
        fan_in = int(np.prod(shape[1 : 1 + fan_in_axes]))
        return (jax.random.normal(key, shape) / np.sqrt(fan_in)).astype(dtype)

    return init


def const_init(value: float, jitter: float = 0.0):
    """Initialiser ``value`` plus optional N(0, jitter^2) noise (non-trivial norms in tests)."""

    def init(key, shape, dtype):
        return (value + jitter * jax.random.normal(key, shape)).astype(dtype)

    return init
