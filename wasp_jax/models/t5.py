"""T5 / Flan-T5 encoder-decoder in Flax NNX (the WASP paper's Flan-T5-xl; sentence-T5's encoder).

Pre-norm blocks with T5's RMS-style LayerNorm (scale only, no mean, no bias), attention
without the ``Dh ** -0.5`` score scaling and with a learned relative-position bias (one
table per stack, made by the first layer and shared by all layers; bidirectional buckets
in the encoder, causal ones in the decoder), and a feed-forward that is either ReLU
(T5 v1.0) or gated (``wi_0`` through the activation times ``wi_1``: gated GELU in T5 v1.1
and Flan-T5). Decoder blocks add cross-attention over the encoder output. The head is the
shared embedding (the last hidden state scaled by ``d_model ** -0.5`` first) or a separate
``lm_head``.

Weight layout (per layer, after the leading layer axis): ``wq``/``wk``/``wv`` [D, H, Dh],
``wo`` [H, Dh, D], ``wi``/``wi_0``/``wi_1`` [D, F], ``wo_ff`` [F, D]; decoder layers also
``cq``/``ck``/``cv`` [D, H, Dh] and ``co`` [H, Dh, D]. ``shared`` [V, D], ``lm_head`` [D, V].

Decoding contract (used by `wasp_jax.models.t5_sampler`): :meth:`T5Model.encode` runs once
per prompt; :meth:`T5Model.cross_kv` projects its output into every decoder layer's
cross-attention keys and values ``[L, Bp, H, P, Dh]``, stored once per prompt; decoder rows
come in groups of ``G = B // Bp`` consecutive rows per prompt row and read that one copy
(the encoder-decoder form of prefix sharing). :meth:`T5Model.decode` keeps a self-attention
cache ``{"k", "v"}: [L, B, N, H, Dh]``.
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wasp_jax.models import layers

_MASK = -1e30

# Parameter name -> axis (of the stacked array) split over the mesh's "model" axis.
SHARD_AXES = {
    "wq": 2,
    "wk": 2,
    "wv": 2,
    "wo": 1,
    "cq": 2,
    "ck": 2,
    "cv": 2,
    "co": 1,
    "wi": 2,
    "wi_0": 2,
    "wi_1": 2,
    "wo_ff": 1,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class T5Config:
    """T5 hyperparameters (the fields of a Hugging Face T5Config that the model uses)."""

    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    num_buckets: int = 32
    max_distance: int = 128
    norm_eps: float = 1e-6
    act: str = "relu"
    gated: bool = False
    tie_embeddings: bool = True
    decoder_start_id: int = 0
    arch: str = "t5"
    max_position: int | None = None  # relative positions: no fixed context

    @property
    def hidden_size(self) -> int:
        return self.d_model

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_hf(cls, hf: dict) -> T5Config:
        """From a Hugging Face ``config.json`` dict (model_type "t5")."""
        proj = hf.get("feed_forward_proj", "relu")
        parts = proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(f"T5 feed_forward_proj {proj!r} is not supported")
        act = "gelu_new" if proj == "gated-gelu" else parts[-1]
        layers.activation(act)  # raises on an unknown activation
        return cls(
            vocab_size=hf["vocab_size"],
            d_model=hf["d_model"],
            d_kv=hf["d_kv"],
            d_ff=hf["d_ff"],
            num_layers=hf["num_layers"],
            num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
            num_heads=hf["num_heads"],
            num_buckets=hf.get("relative_attention_num_buckets", 32),
            max_distance=hf.get("relative_attention_max_distance", 128),
            norm_eps=hf.get("layer_norm_epsilon", 1e-6),
            act=act,
            gated=parts[0] == "gated",
            tie_embeddings=hf.get("tie_word_embeddings", True),
            decoder_start_id=hf.get("decoder_start_token_id") or 0,
        )


def relative_buckets(rel, bidirectional: bool, num_buckets: int, max_distance: int) -> np.ndarray:
    """T5's bucket of each relative position ``key - query`` (numpy, host side).

    Exact buckets for small distances, logarithmic ones up to ``max_distance``; the
    logarithm is taken in float32, as the reference implementation does.
    """
    rel = np.asarray(rel, np.int64)
    out = np.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        out = out + (rel > 0) * num_buckets
        rel = np.abs(rel)
    else:
        rel = -np.minimum(rel, 0)
    exact = num_buckets // 2
    f32 = np.float32
    log = np.log(np.maximum(rel, 1).astype(f32) / f32(exact)) / f32(math.log(max_distance / exact))
    large = exact + (log * f32(num_buckets - exact)).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return out + np.where(rel < exact, rel, large)


def attention(q, k, v, bias, keep):
    """T5 attention (no score scaling): q [B,T,H,Dh], k/v [B,S,H,Dh], bias [H,T,S], keep
    bool broadcastable to [B,H,T,S] -> [B,T,H,Dh]."""
    s = jnp.einsum("bthd,bshd->bhts", q, k, preferred_element_type=jnp.float32) + bias
    p = jax.nn.softmax(jnp.where(keep, s, _MASK), axis=-1).astype(v.dtype)
    return jnp.einsum("bhts,bshd->bthd", p, v, preferred_element_type=jnp.float32).astype(q.dtype)


def grouped_cross_attention(q, ck, cv, cmask):
    """Rows of ``B = Bp * G`` read their prompt row's keys: q [B,T,H,Dh], ck/cv
    [Bp,H,P,Dh], cmask bool [Bp,P] -> [B,T,H,Dh]."""
    b, t, h, dh = q.shape
    bp = ck.shape[0]
    qg = q.reshape(bp, b // bp, t, h, dh)
    s = jnp.einsum("pgthd,phsd->pghts", qg, ck, preferred_element_type=jnp.float32)
    p = jax.nn.softmax(jnp.where(cmask[:, None, None, None, :], s, _MASK), axis=-1)
    o = jnp.einsum("pghts,phsd->pgthd", p.astype(cv.dtype), cv, preferred_element_type=jnp.float32)
    return o.reshape(b, t, h, dh).astype(q.dtype)


def t5_layer_shapes(c: T5Config, decoder: bool) -> dict[str, tuple[int, ...]]:
    """Per-layer parameter shapes of an encoder or decoder block."""
    d, h, dh, f = c.d_model, c.num_heads, c.d_kv, c.d_ff
    shapes = {"attn_norm": (d,), "wq": (d, h, dh), "wk": (d, h, dh), "wv": (d, h, dh)}
    shapes.update(wo=(h, dh, d), mlp_norm=(d,), wo_ff=(f, d))
    shapes.update({"wi_0": (d, f), "wi_1": (d, f)} if c.gated else {"wi": (d, f)})
    if decoder:
        shapes.update(cross_norm=(d,), cq=(d, h, dh), ck=(d, h, dh), cv=(d, h, dh), co=(h, dh, d))
    return shapes


class T5Stack(nnx.Module):
    """The stacked blocks of an encoder or a decoder, its relative-position table and norm."""

    def __init__(self, c: T5Config, decoder: bool, *, rngs: nnx.Rngs, dtype=jnp.float32):
        shapes = t5_layer_shapes(c, decoder)
        init = {n: layers.fan_in_init(2 if n in ("wo", "co") else 1) for n in shapes}
        init.update({n: layers.const_init(1.0, 0.1) for n in shapes if n.endswith("norm")})
        n = c.num_decoder_layers if decoder else c.num_layers
        self.layers = layers.Stacked(shapes, n, init, rngs=rngs, dtype=dtype)
        self.rel_bias = nnx.Param(
            layers.normal_init(1.0)(rngs.params(), (c.num_buckets, c.num_heads), dtype)
        )
        self.final_norm = nnx.Param(jnp.ones((c.d_model,), dtype))


def feed_forward(x, p, c: T5Config, cdt):
    """The block's feed-forward: ReLU (or another activation), gated or not."""
    act = layers.activation(c.act)
    if c.gated:
        y = act(layers.dense(x, p["wi_0"], cdt)) * layers.dense(x, p["wi_1"], cdt)
    else:
        y = act(layers.dense(x, p["wi"], cdt))
    return layers.dense(y, p["wo_ff"], cdt)


def run_encoder(shared, stack: T5Stack, c: T5Config, tokens, mask, cdt=None):
    """Encoder hidden states [B, P, D] of (padded) tokens [B, P] with mask [B, P]."""
    p = tokens.shape[1]
    pos = np.arange(p)
    buckets = relative_buckets(pos[None, :] - pos[:, None], True, c.num_buckets, c.max_distance)
    bias = jnp.take(stack.rel_bias[...], jnp.asarray(buckets), axis=0).transpose(2, 0, 1)
    keep = mask.astype(bool)[:, None, None, :]
    x = jnp.take(shared, tokens, axis=0)
    h, dh = c.num_heads, c.d_kv

    def layer(x, lp):
        a = layers.rms_norm(x, lp["attn_norm"], c.norm_eps)
        q, k, v = layers.project_qkv(a, lp, h, h, dh, cdt)
        x = x + layers.dense(attention(q, k, v, bias, keep), lp["wo"], cdt, axes=2)
        x = x + feed_forward(layers.rms_norm(x, lp["mlp_norm"], c.norm_eps), lp, c, cdt)
        return x, None

    x, _ = jax.lax.scan(layer, x, stack.layers.arrays())
    return layers.rms_norm(x, stack.final_norm[...], c.norm_eps)


class T5Model(nnx.Module):
    """T5 encoder-decoder (see the module docstring for the decoding contract)."""

    SHARD_AXES = SHARD_AXES
    is_encoder_decoder = True

    def __init__(self, config: T5Config, *, rngs: nnx.Rngs, dtype=jnp.float32):
        c = self.config = config
        self.shared = nnx.Param(
            layers.normal_init(1.0)(rngs.params(), (c.vocab_size, c.d_model), dtype)
        )
        self.encoder = T5Stack(c, False, rngs=rngs, dtype=dtype)
        self.decoder = T5Stack(c, True, rngs=rngs, dtype=dtype)
        self.lm_head = nnx.data(None)
        if not c.tie_embeddings:
            head = layers.normal_init(c.d_model**-0.5)(
                rngs.params(), (c.d_model, c.vocab_size), dtype
            )
            self.lm_head = nnx.Param(head)
        # Precision of the dense products (None: the parameter dtype); see layers.dense.
        self.compute_dtype = None

    def encode(self, tokens, mask):
        """Encoder output [B, P, D] of tokens [B, P] (any padding, masked by ``mask``)."""
        return run_encoder(
            self.shared[...], self.encoder, self.config, tokens, mask, self.compute_dtype
        )

    def cross_kv(self, enc):
        """Every decoder layer's cross-attention keys and values, ``[L, B, H, P, Dh]`` each."""
        lay = self.decoder.layers
        k = jnp.einsum("bpd,ldhk->lbhpk", enc, lay.ck[...], preferred_element_type=jnp.float32)
        v = jnp.einsum("bpd,ldhk->lbhpk", enc, lay.cv[...], preferred_element_type=jnp.float32)
        return {"k": k.astype(enc.dtype), "v": v.astype(enc.dtype)}

    def init_cache(self, batch_size: int, max_len: int, dtype=jnp.float32) -> dict[str, jax.Array]:
        """Zero self-attention cache {"k", "v"} of shape [L_dec, B, max_len, H, Dh]."""
        c = self.config
        n = c.num_decoder_layers
        return layers.init_kv_cache(n, batch_size, max_len, c.num_heads, c.d_kv, dtype)

    def decode(self, tokens, cache, cache_index, cross, cross_mask):
        """One decoder chunk: tokens [B, T] written to cache slots ``[cache_index, +T)``.

        Args:
          tokens: int32 [B, T] (every row starts at slot 0 with the decoder start token).
          cache: {"k", "v"} [L, B, N, H, Dh].
          cache_index: int32 scalar (may be traced).
          cross: {"k", "v"} [L, Bp, H, P, Dh] from :meth:`cross_kv`; ``B % Bp == 0``.
          cross_mask: bool [Bp, P], the prompt's real tokens.

        Returns:
          (logits float32 [B, T, V], new cache).
        """
        c, cdt = self.config, self.compute_dtype
        t, n = tokens.shape[1], cache["k"].shape[2]
        table = relative_buckets(np.arange(-(n - 1), n), False, c.num_buckets, c.max_distance)
        q_pos = cache_index + jnp.arange(t)
        rel = jnp.arange(n)[None, :] - q_pos[:, None]
        buckets = jnp.take(jnp.asarray(table), rel + n - 1)
        bias = jnp.take(self.decoder.rel_bias[...], buckets, axis=0).transpose(2, 0, 1)
        keep = (rel <= 0)[None, None]
        x = jnp.take(self.shared[...], tokens, axis=0)
        h, dh = c.num_heads, c.d_kv

        def layer(x, lp, kc, vc, i, ckv):
            a = layers.rms_norm(x, lp["attn_norm"], c.norm_eps)
            q, k, v = layers.project_qkv(a, lp, h, h, dh, cdt)
            kc, k_all = layers.write_and_read_cache(kc, k, i, cache_index)
            vc, v_all = layers.write_and_read_cache(vc, v, i, cache_index)
            x = x + layers.dense(attention(q, k_all, v_all, bias, keep), lp["wo"], cdt, axes=2)
            cq = layers.dense(layers.rms_norm(x, lp["cross_norm"], c.norm_eps), lp["cq"], cdt)
            o = grouped_cross_attention(cq, ckv[0], ckv[1], cross_mask)
            x = x + layers.dense(o, lp["co"], cdt, axes=2)
            x = x + feed_forward(layers.rms_norm(x, lp["mlp_norm"], c.norm_eps), lp, c, cdt)
            return x, kc, vc

        params = self.decoder.layers.arrays()
        x, cache = layers.scan_layers(layer, x, params, cache, (cross["k"], cross["v"]))
        x = layers.rms_norm(x, self.decoder.final_norm[...], c.norm_eps)
        if self.lm_head is None:
            x, head = x * c.d_model**-0.5, self.shared[...].T
        else:
            head = self.lm_head[...]
        logits = jnp.einsum("btd,dv->btv", x, head, preferred_element_type=jnp.float32)
        return logits, cache
