"""Llama-family decoder (Llama 2/3, Mistral, SmolLM2, Qwen2-style q/k/v bias) in Flax NNX.

Pre-norm blocks: RMSNorm -> GQA attention with rotate-half RoPE -> residual, RMSNorm ->
SwiGLU MLP -> residual; final RMSNorm; tied or untied output head. Weights are stacked
over layers (see ``layers.Stacked``) and run with one ``lax.scan``.

Weight layout (per layer, after the leading layer axis): ``wq`` [D, H, Dh],
``wk``/``wv`` [D, Hkv, Dh], ``wo`` [H, Dh, D], ``w_gate``/``w_up`` [D, F],
``w_down`` [F, D]; ``embed`` [V, D]; ``lm_head`` [D, V] when untied.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from wasp_jax.models import layers
from wasp_jax.models.config import DecoderConfig

# Parameter name -> axis (of the stacked array) split over the mesh's "model" axis
# (rules in wasp_jax.models.sharding; Gemma 3 shares this table).
SHARD_AXES = {
    "wq": 2,
    "wk": 2,
    "wv": 2,
    "bq": 1,
    "bk": 1,
    "bv": 1,
    "wo": 1,
    "w_gate": 2,
    "w_up": 2,
    "w_down": 1,
}


def llama_layer_shapes(c: DecoderConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer parameter shapes of a Llama block."""
    d, h, kv, dh, f = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    shapes = {
        "attn_norm": (d,),
        "wq": (d, h, dh),
        "wk": (d, kv, dh),
        "wv": (d, kv, dh),
        "wo": (h, dh, d),
        "mlp_norm": (d,),
        "w_gate": (d, f),
        "w_up": (d, f),
        "w_down": (f, d),
    }
    if c.qkv_bias:
        shapes.update(bq=(h, dh), bk=(kv, dh), bv=(kv, dh))
    return shapes


class LlamaModel(layers.CachedDecoder):
    """Llama-family causal LM with a static KV cache (contract in ``wasp_jax.models``).

    Args:
      config: ``DecoderConfig`` with ``arch == "llama"``.
      rngs: RNG streams for the random initialisation (loaders overwrite the values).
      dtype: parameter and compute dtype.
    """

    SHARD_AXES = SHARD_AXES

    def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        if config.arch != "llama":
            raise ValueError(f"LlamaModel needs arch='llama', got {config.arch!r}")
        self.config = config
        c = config
        shapes = llama_layer_shapes(c)
        init = {n: layers.fan_in_init(2 if n == "wo" else 1) for n in shapes}
        init.update(attn_norm=layers.const_init(1.0, 0.1), mlp_norm=layers.const_init(1.0, 0.1))
        init.update({n: layers.normal_init(0.1) for n in ("bq", "bk", "bv")})
        self.embed = nnx.Param(
            layers.normal_init(0.3)(rngs.params(), (c.vocab_size, c.hidden_size), dtype)
        )
        self.layers = layers.Stacked(shapes, c.num_layers, init, rngs=rngs, dtype=dtype)
        self.final_norm = nnx.Param(
            layers.const_init(1.0, 0.1)(rngs.params(), (c.hidden_size,), dtype)
        )
        # Precision of the dense products (None: the parameter dtype); see layers.dense.
        self.compute_dtype = None
        self.lm_head = nnx.data(None)
        if not c.tie_embeddings:
            head_init = layers.normal_init(1.0 / np.sqrt(c.hidden_size))
            self.lm_head = nnx.Param(head_init(rngs.params(), (c.hidden_size, c.vocab_size), dtype))

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
        """One prefill or decode chunk.

        Args:
          tokens: int32 [B, T].
          positions: int32 [B, T], RoPE positions (0 at each row's first real token).
          cache: {"k", "v"} [L, B, S, Hkv, Dh].
          cache_index: int32 scalar (may be traced); this chunk fills slots
            [cache_index, cache_index + T).
          kv_mask: bool [B, S], True for slots holding real tokens, this chunk included.
          last_only: static; return logits of the last position only ([B, 1, V]).
          prefix: optional shared prefix ``{"k", "v": [L, Bp, Hkv, Sp, Dh], "mask": bool
            [Bp, Sp]}`` that precedes ``cache``; rows ``[p * G, (p + 1) * G)`` share prefix
            row ``p`` (``G = B // Bp``). See ``layers.gqa_attention``.
          per_layer: optional per-layer weight dicts (``sharding.unstack_layers``) used instead
            of the stacked ones; the layers then run as a Python loop (``layers.scan_layers``).

        Returns:
          (logits float32 [B, T, V], new cache).
        """
        c = self.config
        t = tokens.shape[1]
        x = jnp.take(self.embed[...], tokens, axis=0)
        cos, sin = layers.rope_tables(
            positions, layers.rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling_dict)
        )
        mask = layers.attention_mask(cache_index, t, kv_mask, c.sliding_window)
        pre_mask, pre_kv = layers.prefix_parts(prefix, cache_index, t, c.sliding_window)
        act = layers.activation(c.hidden_act)
        cdt = self.compute_dtype

        def layer(h, p, kc, vc, i, pkv):
            a = layers.rms_norm(h, p["attn_norm"], c.norm_eps)
            q, k, v = layers.project_qkv(a, p, c.num_heads, c.num_kv_heads, c.head_dim, cdt)
            if c.qkv_bias:
                q, k, v = q + p["bq"], k + p["bk"], v + p["bv"]
            q, k = layers.apply_rope(q, cos, sin), layers.apply_rope(k, cos, sin)
            kc, k_all = layers.write_and_read_cache(kc, k, i, cache_index)
            vc, v_all = layers.write_and_read_cache(vc, v, i, cache_index)
            pre = None if pkv is None else (*pkv, pre_mask)
            o = layers.gqa_attention(q, k_all, v_all, mask, c.scale, c.attn_softcap, pre)
            h = h + layers.dense(o, p["wo"], cdt, axes=2)
            m = layers.rms_norm(h, p["mlp_norm"], c.norm_eps)
            gate = act(layers.dense(m, p["w_gate"], cdt)) * layers.dense(m, p["w_up"], cdt)
            h = h + layers.dense(gate, p["w_down"], cdt)
            return h, kc, vc

        params = self.layers.arrays() if per_layer is None else per_layer
        x, cache = layers.scan_layers(layer, x, params, cache, pre_kv)
        x = layers.select_positions(x, last_only)
        x = layers.rms_norm(x, self.final_norm[...], c.norm_eps)
        head = self.embed[...].T if self.lm_head is None else self.lm_head[...]
        logits = jnp.einsum("btd,dv->btv", x, head, preferred_element_type=jnp.float32)
        if c.final_softcap is not None:
            logits = jnp.tanh(logits / c.final_softcap) * c.final_softcap
        return logits, cache
