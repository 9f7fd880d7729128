"""GPT-2 decoder in Flax NNX (for Hugging Face folders; the WASP paper used GPT-2-xl).

Pre-LayerNorm blocks with learned absolute position embeddings, biased projections, a
``gelu_new`` (tanh GELU) MLP and a head tied to the token embedding. Same cache and call
contract as the other decoders; ``positions`` index the learned position table.

HF GPT-2 stores its projections as ``Conv1D`` weights, already [in, out].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wasp_jax.models import layers
from wasp_jax.models.config import DecoderConfig

# Parameter name -> axis (of the stacked array) split over the mesh's "model" axis.
SHARD_AXES = {
    "wq": 2,
    "wk": 2,
    "wv": 2,
    "bq": 1,
    "bk": 1,
    "bv": 1,
    "wo": 1,
    "w_fc": 2,
    "b_fc": 1,
    "w_proj": 1,
}


def gpt2_layer_shapes(c: DecoderConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer parameter shapes of a GPT-2 block (also OPT's: same names and layout)."""
    d, h, dh, f = c.hidden_size, c.num_heads, c.head_dim, c.intermediate_size
    return {
        "attn_norm": (d,),
        "attn_norm_b": (d,),
        "wq": (d, h, dh),
        "wk": (d, h, dh),
        "wv": (d, h, dh),
        "bq": (h, dh),
        "bk": (h, dh),
        "bv": (h, dh),
        "wo": (h, dh, d),
        "bo": (d,),
        "mlp_norm": (d,),
        "mlp_norm_b": (d,),
        "w_fc": (d, f),
        "b_fc": (f,),
        "w_proj": (f, d),
        "b_proj": (d,),
    }


def gpt2_layer_init(shapes: dict[str, tuple[int, ...]]) -> dict:
    """Initialisers of a GPT-2-style block: fan-in matrices, unit norm scales, zero biases."""
    init = {n: layers.fan_in_init(2 if n == "wo" else 1) for n in shapes}
    init.update({n: layers.const_init(1.0) for n in ("attn_norm", "mlp_norm")})
    init.update({n: layers.const_init(0.0) for n in shapes if n.startswith("b") or n[-2:] == "_b"})
    return init


class GPT2Model(layers.CachedDecoder):
    """GPT-2 causal LM with a static KV cache (contract in ``wasp_jax.models``)."""

    SHARD_AXES = SHARD_AXES

    def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        if config.arch != "gpt2" or config.max_position is None:
            raise ValueError("GPT2Model needs arch='gpt2' and max_position (n_positions)")
        self.config = config
        c = config
        shapes = gpt2_layer_shapes(c)
        init = gpt2_layer_init(shapes)
        emb = layers.normal_init(0.02)
        self.embed = nnx.Param(emb(rngs.params(), (c.vocab_size, c.hidden_size), dtype))
        self.pos_embed = nnx.Param(emb(rngs.params(), (c.max_position, c.hidden_size), dtype))
        self.layers = layers.Stacked(shapes, c.num_layers, init, rngs=rngs, dtype=dtype)
        self.final_norm = nnx.Param(jnp.ones((c.hidden_size,), dtype))
        self.final_norm_b = nnx.Param(jnp.zeros((c.hidden_size,), dtype))
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
        pos = jnp.clip(positions, 0, c.max_position - 1)
        x = jnp.take(emb, tokens, axis=0) + jnp.take(self.pos_embed[...], pos, axis=0)
        mask = layers.attention_mask(cache_index, t, kv_mask, c.sliding_window)
        pre_mask, pre_kv = layers.prefix_parts(prefix, cache_index, t, c.sliding_window)
        eps = c.norm_eps

        cdt = self.compute_dtype

        def layer(h, p, kc, vc, i, pkv):
            a = layers.layer_norm(h, p["attn_norm"], p["attn_norm_b"], eps)
            q, k, v = layers.project_qkv(a, p, c.num_heads, c.num_heads, c.head_dim, cdt)
            q, k, v = q + p["bq"], k + p["bk"], v + p["bv"]
            kc, k_all = layers.write_and_read_cache(kc, k, i, cache_index)
            vc, v_all = layers.write_and_read_cache(vc, v, i, cache_index)
            pre = None if pkv is None else (*pkv, pre_mask)
            o = layers.gqa_attention(q, k_all, v_all, mask, c.scale, None, pre)
            h = h + layers.dense(o, p["wo"], cdt, axes=2) + p["bo"]
            m = layers.layer_norm(h, p["mlp_norm"], p["mlp_norm_b"], eps)
            y = jax.nn.gelu(layers.dense(m, p["w_fc"], cdt) + p["b_fc"], approximate=True)
            return h + layers.dense(y, p["w_proj"], cdt) + p["b_proj"], kc, vc

        params = self.layers.arrays() if per_layer is None else per_layer
        x, cache = layers.scan_layers(layer, x, params, cache, pre_kv)
        x = layers.select_positions(x, last_only)
        x = layers.layer_norm(x, self.final_norm[...], self.final_norm_b[...], eps)
        logits = jnp.einsum("btd,vd->btv", x, emb, preferred_element_type=jnp.float32)
        return logits, cache


def hf_gpt2_to_params(cfg: DecoderConfig, sd: dict[str, np.ndarray]) -> dict:
    """Maps HF GPT-2 tensors (``transformer.`` prefix optional; Conv1D [in, out]) to params."""
    pre = "transformer." if "transformer.wte.weight" in sd else ""
    d, h = cfg.hidden_size, cfg.num_heads
    blocks = []
    for i in range(cfg.num_layers):
        p = f"{pre}h.{i}."
        w_qkv, b_qkv = sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"]
        wq, wk, wv = (w_qkv[:, j * d : (j + 1) * d].reshape(d, h, -1) for j in range(3))
        bq, bk, bv = (b_qkv[j * d : (j + 1) * d].reshape(h, -1) for j in range(3))
        blocks.append(
            dict(
                attn_norm=sd[p + "ln_1.weight"],
                attn_norm_b=sd[p + "ln_1.bias"],
                wq=wq,
                wk=wk,
                wv=wv,
                bq=bq,
                bk=bk,
                bv=bv,
                wo=sd[p + "attn.c_proj.weight"].reshape(h, -1, d),
                bo=sd[p + "attn.c_proj.bias"],
                mlp_norm=sd[p + "ln_2.weight"],
                mlp_norm_b=sd[p + "ln_2.bias"],
                w_fc=sd[p + "mlp.c_fc.weight"],
                b_fc=sd[p + "mlp.c_fc.bias"],
                w_proj=sd[p + "mlp.c_proj.weight"],
                b_proj=sd[p + "mlp.c_proj.bias"],
            )
        )
    stacked = {k: np.stack([lp[k] for lp in blocks]) for k in blocks[0]}
    return dict(
        embed=sd[f"{pre}wte.weight"],
        pos_embed=sd[f"{pre}wpe.weight"],
        layers=stacked,
        final_norm=sd[f"{pre}ln_f.weight"],
        final_norm_b=sd[f"{pre}ln_f.bias"],
    )
