"""OPT decoder in Flax NNX (for Hugging Face folders; the WASP paper used OPT-6.7b).

Blocks of LayerNorm (with bias) -> biased multi-head attention -> residual, LayerNorm ->
ReLU MLP -> residual, pre-norm (``do_layer_norm_before``, every size but 350m) or post-norm
(350m: each LayerNorm after its residual, no final norm). Learned absolute positions whose
table is offset by 2: position ``p`` reads row ``p + 2``. Where ``word_embed_proj_dim``
differs from the width (350m), the embedding is projected in (``project_in``) and the last
hidden state projected out (``project_out``) before the head, which is tied to the token
embedding. Same cache and call contract as the other decoders.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wasp_jax.models import gpt2, layers
from wasp_jax.models.config import DecoderConfig
from wasp_jax.models.gpt2 import gpt2_layer_init, gpt2_layer_shapes

#: Rows of the learned position table before position 0 (HF ``OPTLearnedPositionalEmbedding``).
POSITION_OFFSET = 2

# Parameter name -> axis (of the stacked array) split over the mesh's "model" axis.
SHARD_AXES = dict(gpt2.SHARD_AXES)


#: Per-layer parameter shapes of an OPT block: GPT-2's names and layout.
opt_layer_shapes = gpt2_layer_shapes


class OPTModel(layers.CachedDecoder):
    """OPT causal LM with a static KV cache (contract in ``wasp_jax.models``)."""

    SHARD_AXES = SHARD_AXES

    def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        if config.arch != "opt" or config.max_position is None:
            raise ValueError("OPTModel needs arch='opt' and max_position")
        self.config = config
        c = config
        shapes = opt_layer_shapes(c)
        init = gpt2_layer_init(shapes)
        e = c.embed_dim or c.hidden_size
        emb = layers.normal_init(0.02)
        self.embed = nnx.Param(emb(rngs.params(), (c.vocab_size, e), dtype))
        rows = c.max_position + POSITION_OFFSET
        self.pos_embed = nnx.Param(emb(rngs.params(), (rows, c.hidden_size), dtype))
        self.layers = layers.Stacked(shapes, c.num_layers, init, rngs=rngs, dtype=dtype)
        self.final_norm = nnx.data(None)
        self.final_norm_b = nnx.data(None)
        if c.norm_before:
            self.final_norm = nnx.Param(jnp.ones((c.hidden_size,), dtype))
            self.final_norm_b = nnx.Param(jnp.zeros((c.hidden_size,), dtype))
        self.project_in = nnx.data(None)
        self.project_out = nnx.data(None)
        if c.embed_dim is not None:
            proj = layers.normal_init(1.0 / np.sqrt(e))
            self.project_in = nnx.Param(proj(rngs.params(), (e, c.hidden_size), dtype))
            self.project_out = nnx.Param(proj(rngs.params(), (c.hidden_size, e), dtype))
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
        x = jnp.take(emb, tokens, axis=0)
        if self.project_in is not None:
            x = layers.dense(x, self.project_in[...], self.compute_dtype)
        pos = jnp.clip(positions, 0, c.max_position - 1) + POSITION_OFFSET
        x = x + jnp.take(self.pos_embed[...], pos, axis=0)
        mask = layers.attention_mask(cache_index, t, kv_mask, c.sliding_window)
        pre_mask, pre_kv = layers.prefix_parts(prefix, cache_index, t, c.sliding_window)
        eps, before = c.norm_eps, c.norm_before
        cdt = self.compute_dtype

        def norm(h, p, name):
            return layers.layer_norm(h, p[name], p[name + "_b"], eps)

        def layer(h, p, kc, vc, i, pkv):
            a = norm(h, p, "attn_norm") if before else h
            q, k, v = layers.project_qkv(a, p, c.num_heads, c.num_heads, c.head_dim, cdt)
            q, k, v = q + p["bq"], k + p["bk"], v + p["bv"]
            kc, k_all = layers.write_and_read_cache(kc, k, i, cache_index)
            vc, v_all = layers.write_and_read_cache(vc, v, i, cache_index)
            pre = None if pkv is None else (*pkv, pre_mask)
            o = layers.gqa_attention(q, k_all, v_all, mask, c.scale, None, pre)
            h = h + layers.dense(o, p["wo"], cdt, axes=2) + p["bo"]
            h = h if before else norm(h, p, "attn_norm")
            m = norm(h, p, "mlp_norm") if before else h
            y = jax.nn.relu(layers.dense(m, p["w_fc"], cdt) + p["b_fc"])
            h = h + layers.dense(y, p["w_proj"], cdt) + p["b_proj"]
            return (h if before else norm(h, p, "mlp_norm")), kc, vc

        params = self.layers.arrays() if per_layer is None else per_layer
        x, cache = layers.scan_layers(layer, x, params, cache, pre_kv)
        x = layers.select_positions(x, last_only)
        if self.final_norm is not None:
            x = layers.layer_norm(x, self.final_norm[...], self.final_norm_b[...], eps)
        if self.project_out is not None:
            x = layers.dense(x, self.project_out[...], cdt)
        logits = jnp.einsum("btd,vd->btv", x, emb, preferred_element_type=jnp.float32)
        return logits, cache


def hf_opt_config(hf: dict) -> DecoderConfig:
    """DecoderConfig of a Hugging Face OPT ``config.json`` dict."""
    d, h = hf["hidden_size"], hf["num_attention_heads"]
    act = hf.get("activation_function", "relu")
    if act != "relu":
        raise ValueError(f"OPT with activation_function {act!r} is not supported (only relu)")
    if not hf.get("enable_bias", True) or not hf.get("layer_norm_elementwise_affine", True):
        raise ValueError("OPT without biases or without affine LayerNorms is not supported")
    before = bool(hf.get("do_layer_norm_before", True))
    if before and hf.get("_remove_final_layer_norm", False):
        raise ValueError("OPT with _remove_final_layer_norm is not supported")
    proj = hf.get("word_embed_proj_dim", d)
    return DecoderConfig.create(
        arch="opt",
        vocab_size=hf["vocab_size"],
        hidden_size=d,
        intermediate_size=hf["ffn_dim"],
        num_layers=hf["num_hidden_layers"],
        num_heads=h,
        num_kv_heads=h,
        head_dim=d // h,
        norm_eps=1e-5,
        max_position=hf["max_position_embeddings"],
        hidden_act="relu",
        tie_embeddings=True,
        embed_dim=None if proj == d else proj,
        norm_before=before,
    )


def hf_opt_to_params(cfg: DecoderConfig, sd: dict[str, np.ndarray]) -> dict:
    """Maps HF OPT tensors (torch [out, in]; ``model.`` prefix optional) to module params."""
    pre = next((p for p in ("model.decoder.", "decoder.") if f"{p}embed_tokens.weight" in sd), None)
    if pre is None:
        raise ValueError("no decoder.embed_tokens.weight found: not an OPT checkpoint")
    h = cfg.num_heads

    def heads_in(w):
        return w.T.reshape(w.shape[1], h, -1)

    blocks = []
    for i in range(cfg.num_layers):
        p = f"{pre}layers.{i}."
        a = p + "self_attn."
        blocks.append(
            dict(
                attn_norm=sd[p + "self_attn_layer_norm.weight"],
                attn_norm_b=sd[p + "self_attn_layer_norm.bias"],
                wq=heads_in(sd[a + "q_proj.weight"]),
                wk=heads_in(sd[a + "k_proj.weight"]),
                wv=heads_in(sd[a + "v_proj.weight"]),
                bq=sd[a + "q_proj.bias"].reshape(h, -1),
                bk=sd[a + "k_proj.bias"].reshape(h, -1),
                bv=sd[a + "v_proj.bias"].reshape(h, -1),
                wo=sd[a + "out_proj.weight"].T.reshape(h, -1, cfg.hidden_size),
                bo=sd[a + "out_proj.bias"],
                mlp_norm=sd[p + "final_layer_norm.weight"],
                mlp_norm_b=sd[p + "final_layer_norm.bias"],
                w_fc=sd[p + "fc1.weight"].T,
                b_fc=sd[p + "fc1.bias"],
                w_proj=sd[p + "fc2.weight"].T,
                b_proj=sd[p + "fc2.bias"],
            )
        )
    out = dict(
        embed=sd[pre + "embed_tokens.weight"],
        pos_embed=sd[pre + "embed_positions.weight"],
        layers={k: np.stack([lp[k] for lp in blocks]) for k in blocks[0]},
    )
    if cfg.norm_before:
        out.update(final_norm=sd[pre + "final_layer_norm.weight"])
        out.update(final_norm_b=sd[pre + "final_layer_norm.bias"])
    if cfg.embed_dim is not None:
        out.update(project_in=sd[pre + "project_in.weight"].T)
        out.update(project_out=sd[pre + "project_out.weight"].T)
    return out
