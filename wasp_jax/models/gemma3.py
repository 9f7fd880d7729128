"""Gemma 3 text decoder in Flax NNX.

Differences from Llama: the embedding is scaled by sqrt(hidden_size); q and k get a
per-head RMSNorm; attention and MLP outputs get their own RMSNorm before the residual
("sandwich" norms); GeGLU (tanh GELU) MLP; scores scaled by ``query_pre_attn_scalar**-0.5``;
a local:global layer pattern where local layers use a sliding window and RoPE base
``rope_local_theta`` (10000) and global layers attend fully with ``rope_theta``.

Norm weights are stored **as applied** (``x_normed * w``). Gemma checkpoints in the
Hugging Face format store ``w - 1`` (the module computes ``1 + w``); GGUF files already
store ``w``. The loaders fold the difference in, so this module never adds 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wasp_jax.models import layers
from wasp_jax.models.config import DecoderConfig
from wasp_jax.models.llama import SHARD_AXES

NORMS = ("attn_norm", "q_norm", "k_norm", "post_attn_norm", "mlp_norm", "post_mlp_norm")


def gemma3_layer_shapes(c: DecoderConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer parameter shapes of a Gemma 3 block."""
    d, h, kv, dh, f = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    return {
        "attn_norm": (d,),
        "wq": (d, h, dh),
        "wk": (d, kv, dh),
        "wv": (d, kv, dh),
        "q_norm": (dh,),
        "k_norm": (dh,),
        "wo": (h, dh, d),
        "post_attn_norm": (d,),
        "mlp_norm": (d,),
        "w_gate": (d, f),
        "w_up": (d, f),
        "w_down": (f, d),
        "post_mlp_norm": (d,),
    }


def default_layer_pattern(num_layers: int, period: int = 6) -> tuple[bool, ...]:
    """Gemma 3's pattern: every ``period``-th layer (1-based) is global, the rest local."""
    return tuple((i + 1) % period == 0 for i in range(num_layers))


class Gemma3Model(layers.CachedDecoder):
    """Gemma 3 causal LM with a static KV cache (contract in ``wasp_jax.models``).

    Args:
      config: ``DecoderConfig`` with ``arch == "gemma3"``.
      rngs: RNG streams for the random initialisation (loaders overwrite the values).
      dtype: parameter and compute dtype.
    """

    SHARD_AXES = SHARD_AXES

    def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        if config.arch != "gemma3":
            raise ValueError(f"Gemma3Model needs arch='gemma3', got {config.arch!r}")
        if not config.tie_embeddings:
            raise ValueError("Gemma 3 ties its output head to the embedding")
        self.config = config
        c = config
        shapes = gemma3_layer_shapes(c)
        init = {n: layers.fan_in_init(2 if n == "wo" else 1) for n in shapes}
        init.update({n: layers.const_init(1.0, 0.1) for n in NORMS})
        emb_init = layers.normal_init(1.0 / np.sqrt(c.hidden_size))
        self.embed = nnx.Param(emb_init(rngs.params(), (c.vocab_size, c.hidden_size), dtype))
        self.layers = layers.Stacked(shapes, c.num_layers, init, rngs=rngs, dtype=dtype)
        self.final_norm = nnx.Param(
            layers.const_init(1.0, 0.1)(rngs.params(), (c.hidden_size,), dtype)
        )
        # Precision of the dense products (None: the parameter dtype); see layers.dense.
        self.compute_dtype = None

    def __call__(
        self,
        tokens,
        positions,
        cache,
        cache_index,
        kv_mask,
        *,
        last_only=False,
        prefix=None,
        per_layer=None,
    ):
        """One prefill or decode chunk; same arguments and returns as ``LlamaModel``."""
        c = self.config
        t = tokens.shape[1]
        emb = self.embed[...]
        x = jnp.take(emb, tokens, axis=0) * jnp.asarray(np.sqrt(c.hidden_size), emb.dtype)
        glob_tab = layers.rope_tables(
            positions, layers.rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling_dict)
        )
        local_theta = c.rope_local_theta if c.rope_local_theta is not None else c.rope_theta
        local_tab = layers.rope_tables(positions, layers.rope_inv_freq(c.head_dim, local_theta))
        glob_mask = layers.attention_mask(cache_index, t, kv_mask, None)
        local_mask = layers.attention_mask(cache_index, t, kv_mask, c.sliding_window)
        glob_pre, pre_kv = layers.prefix_parts(prefix, cache_index, t, None)
        local_pre, _ = layers.prefix_parts(prefix, cache_index, t, c.sliding_window)
        pattern = c.layer_is_global or default_layer_pattern(c.num_layers)
        is_global = jnp.asarray(pattern, bool)
        cdt = self.compute_dtype

        def layer(h, p, kc, vc, i, extra):
            glob, pkv = extra
            a = layers.rms_norm(h, p["attn_norm"], c.norm_eps)
            q, k, v = layers.project_qkv(a, p, c.num_heads, c.num_kv_heads, c.head_dim, cdt)
            q = layers.rms_norm(q, p["q_norm"], c.norm_eps)
            k = layers.rms_norm(k, p["k_norm"], c.norm_eps)
            cos = jnp.where(glob, glob_tab[0], local_tab[0])
            sin = jnp.where(glob, glob_tab[1], local_tab[1])
            q, k = layers.apply_rope(q, cos, sin), layers.apply_rope(k, cos, sin)
            kc, k_all = layers.write_and_read_cache(kc, k, i, cache_index)
            vc, v_all = layers.write_and_read_cache(vc, v, i, cache_index)
            mask = jnp.where(glob, glob_mask, local_mask)
            pre = None
            if pkv is not None:
                pre = (*pkv, jnp.where(glob, glob_pre, local_pre))
            o = layers.gqa_attention(q, k_all, v_all, mask, c.scale, c.attn_softcap, pre)
            o = layers.dense(o, p["wo"], cdt, axes=2)
            h = h + layers.rms_norm(o, p["post_attn_norm"], c.norm_eps)
            m = layers.rms_norm(h, p["mlp_norm"], c.norm_eps)
            gate = jax.nn.gelu(layers.dense(m, p["w_gate"], cdt), approximate=True)
            y = layers.dense(gate * layers.dense(m, p["w_up"], cdt), p["w_down"], cdt)
            h = h + layers.rms_norm(y, p["post_mlp_norm"], c.norm_eps)
            return h, kc, vc

        params = self.layers.arrays() if per_layer is None else per_layer
        x, cache = layers.scan_layers(layer, x, params, cache, (is_global, pre_kv))
        x = layers.select_positions(x, last_only)
        x = layers.rms_norm(x, self.final_norm[...], c.norm_eps)
        logits = jnp.einsum("btd,vd->btv", x, emb, preferred_element_type=jnp.float32)
        if c.final_softcap is not None:
            logits = jnp.tanh(logits / c.final_softcap) * c.final_softcap
        return logits, cache
