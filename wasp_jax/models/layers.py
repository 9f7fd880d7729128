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

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wasp_jax.models import lora

# Attention has its own module; its names are re-exported here (``layers.gqa_attention``).
from wasp_jax.models.attention import attention_mask as attention_mask
from wasp_jax.models.attention import encoder_attention as encoder_attention
from wasp_jax.models.attention import gqa_attention as gqa_attention
from wasp_jax.models.attention import prefix_attention_mask as prefix_attention_mask
from wasp_jax.models.attention import prefix_from_cache as prefix_from_cache
from wasp_jax.models.attention import prefix_parts as prefix_parts

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
    """The ``compute_dtype`` of a precision name: "float32" -> None, "bfloat16", or "auto".

    "auto" is bfloat16 on GPUs and TPUs (whose matrix units run it natively) and float32 on
    CPUs, where float32 keeps results comparable across hosts (bfloat16 stays available).
    """
    if precision == "auto":
        return jnp.bfloat16 if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu") else None
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; choose one of auto, {', '.join(PRECISIONS)}"
        )
    return PRECISIONS[precision]


def dense(x: jax.Array, w: jax.Array, compute_dtype=None, axes: int = 1) -> jax.Array:
    """``x @ w`` (x's last ``axes`` axes with w's first), optionally in a lower precision.

    With ``compute_dtype`` (e.g. ``jnp.bfloat16``) both operands are cast to it and the
    product accumulates in float32 (``preferred_element_type``), the mixed precision that
    AVX512-BF16/AMX CPUs, GPUs and TPUs run at up to twice the float32 rate; the result is
    float32. ``None`` computes in the operands' own dtype.
    """
    if isinstance(w, lora.LoraWeight):  # an adapted weight, run unmerged
        return lora.dense_unmerged(x, w, dense, compute_dtype, axes)
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


def select_positions(x: jax.Array, which) -> jax.Array:
    """The positions of hidden states ``x`` [B, T, D] whose logits a caller wants:
    ``which`` False: all; True: the last ([B, 1, D]); an int array [B, K]: those positions
    per row ([B, K, D]; training scores only a completion's tokens, so the output head, the
    costliest product of a large vocabulary, runs on K positions instead of T)."""
    if which is False or which is None:
        return x
    if which is True:
        return x[:, -1:]
    return jnp.take_along_axis(x, jnp.asarray(which)[..., None], axis=1)


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


def fuse_projections(p: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """One layer's q, k and v weights concatenated into one ``wqkv`` [D, (H + 2 Hkv) Dh].

    A batch-1 decode step then runs one wide matrix-vector product instead of three narrow
    ones, each bound by memory traffic plus a fixed per-call cost (greedy SmolLM2: 0.98 s ->
    0.93 s for 30 tokens; fusing gate and up as well sped greedy up a little more but slowed
    the 16-row decode, so they stay apart). Layers without q/k/v are returned unchanged.
    Only for unsharded weights (the concatenation would mix shards).
    """
    out = dict(p)
    if {"wq", "wk", "wv"} <= out.keys():
        d = out["wq"].shape[0]
        out["wqkv"] = jnp.concatenate(
            [out.pop(n).reshape(d, -1) for n in ("wq", "wk", "wv")], axis=1
        )
    return out


def unfuse_projections(p: dict[str, jax.Array], h: int, hkv: int, dh: int) -> dict[str, jax.Array]:
    """The inverse of :func:`fuse_projections`: ``wqkv`` split back into wq, wk and wv."""
    out = dict(p)
    if "wqkv" in out:
        w = out.pop("wqkv")
        d, nq, nk = w.shape[0], h * dh, hkv * dh
        out["wq"] = w[:, :nq].reshape(d, h, dh)
        out["wk"] = w[:, nq : nq + nk].reshape(d, hkv, dh)
        out["wv"] = w[:, nq + nk :].reshape(d, hkv, dh)
    return out


def project_qkv(a, p, h, hkv, dh, compute_dtype):
    """q [B,T,H,Dh], k and v [B,T,Hkv,Dh] from separate or fused (``wqkv``) weights."""
    if "wqkv" not in p:
        return (
            dense(a, p["wq"], compute_dtype),
            dense(a, p["wk"], compute_dtype),
            dense(a, p["wv"], compute_dtype),
        )
    y = dense(a, p["wqkv"], compute_dtype)
    nq, nk = h * dh, hkv * dh
    lead = a.shape[:-1]
    return (
        y[..., :nq].reshape(*lead, h, dh),
        y[..., nq : nq + nk].reshape(*lead, hkv, dh),
        y[..., nq + nk :].reshape(*lead, hkv, dh),
    )


def init_kv_cache(
    num_layers: int, batch_size: int, max_len: int, num_kv_heads: int, head_dim: int, dtype
) -> dict[str, jax.Array]:
    """Zero cache {"k", "v"} of shape [L, B, S, Hkv, Dh]."""
    shape = (num_layers, batch_size, max_len, num_kv_heads, head_dim)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


class CachedDecoder(nnx.Module):
    """Base class of the decoders: the KV cache that ``self.config`` (a ``DecoderConfig``) needs."""

    def init_cache(self, batch_size: int, max_len: int, dtype=jnp.float32) -> dict[str, jax.Array]:
        """Zero KV cache {"k", "v"} of shape [num_layers, B, max_len, num_kv_heads, head_dim]."""
        c = self.config
        return init_kv_cache(c.num_layers, batch_size, max_len, c.num_kv_heads, c.head_dim, dtype)


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
