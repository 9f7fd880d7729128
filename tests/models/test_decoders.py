"""Tiny random decoders: shapes, cached decode == full forward, left padding, masks, sharding."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from wasp_jax.models import DecoderConfig, build_model, partition_specs

V = 64


def _llama(**kw):
    base = dict(
        arch="llama",
        vocab_size=V,
        hidden_size=32,
        intermediate_size=48,
        num_layers=3,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        rope_theta=500.0,
    )
    return DecoderConfig.create(**{**base, **kw})


def _gemma(**kw):
    base = dict(
        arch="gemma3",
        vocab_size=V,
        hidden_size=32,
        intermediate_size=48,
        num_layers=3,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        norm_eps=1e-6,
        rope_theta=1e6,
        rope_local_theta=100.0,
        sliding_window=4,
        layer_is_global=(False, True, False),
        hidden_act="gelu_tanh",
        query_scale=0.3,
    )
    return DecoderConfig.create(**{**base, **kw})


CONFIGS = {
    "llama": _llama(),
    # Qwen2-style q/k/v bias, untied head, MQA and a Mistral-style window on every layer.
    "llama_variant": _llama(qkv_bias=True, tie_embeddings=False, num_kv_heads=1, sliding_window=5),
    "gemma3": _gemma(),
}


def _gpt2_config():
    return DecoderConfig.create(
        arch="gpt2",
        vocab_size=V,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=4,
        head_dim=8,
        max_position=64,
        hidden_act="gelu_new",
    )


try:
    import wasp_jax.models.gpt2  # noqa: F401

    CONFIGS["gpt2"] = _gpt2_config()
except ImportError:
    pass


def _opt_config(**kw):
    base = dict(
        arch="opt",
        vocab_size=V,
        hidden_size=32,
        intermediate_size=48,
        num_layers=2,
        num_heads=4,
        num_kv_heads=4,
        head_dim=8,
        max_position=64,
        hidden_act="relu",
    )
    return DecoderConfig.create(**{**base, **kw})


CONFIGS["opt"] = _opt_config()
# OPT-350m's layout: post-norm blocks, no final norm, embedding projected in and out.
CONFIGS["opt_postnorm_proj"] = _opt_config(norm_before=False, embed_dim=16)


B, S = 2, 12  # one batch/cache shape everywhere, so each model compiles T in {12, 4, 1} only


def _fwd(model):
    graphdef, state = nnx.split(model)

    @jax.jit
    def f(state, tokens, positions, cache, idx, kv_mask):
        return nnx.merge(graphdef, state)(tokens, positions, cache, idx, kv_mask)

    return lambda *a: f(state, *a)


@functools.cache
def _model(name, seed=0):
    model = build_model(CONFIGS[name], None, seed=seed)
    return model, _fwd(model)


def _tokens(key, b, t):
    return jax.random.randint(jax.random.key(key), (b, t), 0, V, dtype=jnp.int32)


def _pos(t, b=B):
    return jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))


ALL = jnp.ones((B, S), bool)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shapes_and_cache_layout(name):
    cfg = CONFIGS[name]
    model, fwd = _model(name)
    cache = model.init_cache(B, S)
    assert set(cache) == {"k", "v"}
    chex.assert_shape(cache["k"], (cfg.num_layers, B, S, cfg.num_kv_heads, cfg.head_dim))
    logits, new = fwd(_tokens(0, B, 4), _pos(4), cache, jnp.int32(0), ALL)
    chex.assert_shape(logits, (B, 4, V))
    assert logits.dtype == jnp.float32
    chex.assert_tree_all_finite(logits)
    chex.assert_trees_all_equal_shapes_and_dtypes(new, cache)
    # Only slots [0, 4) were written.
    assert float(jnp.abs(new["k"][:, :, 4:]).max()) == 0.0
    assert float(jnp.abs(new["k"][:, :, :4]).max()) > 0.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_last_only_is_last_position(name):
    model, fwd = _model(name)
    toks = _tokens(1, B, 4)
    full, _ = fwd(toks, _pos(4), model.init_cache(B, S), jnp.int32(0), ALL)
    graphdef, state = nnx.split(model)
    last_fn = jax.jit(lambda st, *a: nnx.merge(graphdef, st)(*a, last_only=True))
    last, _ = last_fn(state, toks, _pos(4), model.init_cache(B, S), jnp.int32(0), ALL)
    chex.assert_shape(last, (B, 1, V))
    chex.assert_trees_all_close(last[:, 0], full[:, -1], atol=2e-5, rtol=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_incremental_decode_matches_full_forward(name):
    model, fwd = _model(name)
    t = S
    toks = _tokens(3, B, t)
    full, _ = fwd(toks, _pos(t), model.init_cache(B, S), jnp.int32(0), ALL)
    p = 4
    logits, cache = fwd(toks[:, :p], _pos(p), model.init_cache(B, S), jnp.int32(0), ALL)
    chex.assert_trees_all_close(logits, full[:, :p], atol=2e-5, rtol=2e-5)
    for i in range(p, t):
        step, cache = fwd(toks[:, i : i + 1], _pos(t)[:, i : i + 1], cache, jnp.int32(i), ALL)
        chex.assert_trees_all_close(step[:, 0], full[:, i], atol=2e-5, rtol=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_left_padded_rows_equal_rows_alone(name):
    model, fwd = _model(name)
    # Prompts of 12 and 4 tokens, the short one left-padded to 12.
    t, lens = S, (S, 4)
    rows = [_tokens(10 + i, 1, n)[0] for i, n in enumerate(lens)]
    toks = jnp.stack([jnp.pad(r, (t - len(r), 0)) for r in rows])
    pos = jnp.stack([jnp.clip(jnp.arange(t) - (t - n), 0) for n in lens]).astype(jnp.int32)
    kv = jnp.stack([jnp.arange(S) >= t - n for n in lens])
    batch, _ = fwd(toks, pos, model.init_cache(B, S), jnp.int32(0), kv)
    # Row 1 alone (duplicated to keep the compiled batch shape), then a decode step that
    # must see exactly the same keys as in the padded batch.
    r = rows[1]
    alone, c1 = fwd(jnp.stack([r, r]), _pos(4), model.init_cache(B, S), jnp.int32(0), ALL)
    chex.assert_trees_all_close(batch[1, t - 4 :], alone[0], atol=2e-5, rtol=2e-5)
    full0, _ = fwd(rows[0][None].repeat(2, 0), _pos(t), model.init_cache(B, S), jnp.int32(0), ALL)
    chex.assert_trees_all_close(batch[0], full0[0], atol=2e-5, rtol=2e-5)
    # Decode continuation: padded prefix of 4 (slots 4..7 hold row 1's tokens after a
    # 4-slot pad), versus row 1 alone in slots 0..3; next token at slot 8 / slot 4.
    pad_toks = jnp.stack([jnp.pad(r, (4, 0)), jnp.pad(r, (4, 0))])
    pad_pos = jnp.clip(jnp.arange(8) - 4, 0)[None].repeat(2, 0).astype(jnp.int32)
    kv_p = jnp.broadcast_to((jnp.arange(S) >= 4), (B, S))
    _, cp = fwd(pad_toks[:, :4], pad_pos[:, :4], model.init_cache(B, S), jnp.int32(0), kv_p)
    _, cp = fwd(pad_toks[:, 4:], pad_pos[:, 4:], cp, jnp.int32(4), kv_p)
    nxt = _tokens(20, B, 1)
    a, _ = fwd(nxt, jnp.full((B, 1), 4, jnp.int32), cp, jnp.int32(8), kv_p)
    b, _ = fwd(nxt, jnp.full((B, 1), 4, jnp.int32), c1, jnp.int32(4), ALL)
    chex.assert_trees_all_close(a, b, atol=2e-5, rtol=2e-5)


def _rms(x, w, eps):
    return x / jnp.sqrt(jnp.mean(x * x, -1, keepdims=True) + eps) * w


def _rope_ref(x, theta):
    # x [T, H, Dh]; explicit rotate-half rotation per position.
    t, _, dh = x.shape
    half = dh // 2
    inv = theta ** (-np.arange(half) * 2.0 / dh)
    ang = np.arange(t)[:, None] * inv[None]
    cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def _gemma_reference(model, toks):
    """Naive single-sequence Gemma 3 forward: explicit masks per layer, no cache, no scan."""
    c = model.config
    p = model.layers.arrays()
    emb = model.embed[...]
    x = emb[toks] * np.sqrt(c.hidden_size)
    t = len(toks)
    g = c.num_heads // c.num_kv_heads
    for layer in range(c.num_layers):
        lp = {k: v[layer] for k, v in p.items()}
        glob = c.layer_is_global[layer]
        a = _rms(x, lp["attn_norm"], c.norm_eps)
        q = _rms(jnp.einsum("td,dhk->thk", a, lp["wq"]), lp["q_norm"], c.norm_eps)
        k = _rms(jnp.einsum("td,dhk->thk", a, lp["wk"]), lp["k_norm"], c.norm_eps)
        v = jnp.einsum("td,dhk->thk", a, lp["wv"])
        theta = c.rope_theta if glob else c.rope_local_theta
        q, k = _rope_ref(q, theta), _rope_ref(k, theta)
        heads = []
        for h in range(c.num_heads):
            sc = q[:, h] @ k[:, h // g].T * c.scale
            i, j = np.arange(t)[:, None], np.arange(t)[None]
            allowed = (j <= i) if glob else (j <= i) & (i - j < c.sliding_window)
            sc = jnp.where(allowed, sc, -jnp.inf)
            heads.append(jax.nn.softmax(sc, -1) @ v[:, h // g])
        o = jnp.einsum("thk,hkd->td", jnp.stack(heads, 1), lp["wo"])
        x = x + _rms(o, lp["post_attn_norm"], c.norm_eps)
        m = _rms(x, lp["mlp_norm"], c.norm_eps)
        y = (jax.nn.gelu(m @ lp["w_gate"], approximate=True) * (m @ lp["w_up"])) @ lp["w_down"]
        x = x + _rms(y, lp["post_mlp_norm"], c.norm_eps)
    return _rms(x, model.final_norm[...], c.norm_eps) @ emb.T


@pytest.mark.slow
def test_gemma_local_window_matches_naive_reference():
    model, fwd = _model("gemma3")
    cfg = model.config
    toks = _tokens(5, B, S)  # three times the window, so local layers really drop keys
    got, _ = fwd(toks, _pos(S), model.init_cache(B, S), jnp.int32(0), ALL)
    ref = jax.jit(lambda t: _gemma_reference(model, t))(toks[0])
    chex.assert_trees_all_close(got[0], ref, atol=1e-4, rtol=1e-4)
    # The window matters: without it the logits agree inside the window only.
    CONFIGS["gemma3_nowindow"] = DecoderConfig.create(**{**cfg.__dict__, "sliding_window": None})
    wide = build_model(CONFIGS["gemma3_nowindow"], None, seed=0)
    other, _ = _fwd(wide)(toks, _pos(S), wide.init_cache(B, S), jnp.int32(0), ALL)
    chex.assert_trees_all_close(other[:, :4], got[:, :4], atol=1e-5, rtol=1e-5)
    assert float(jnp.abs(other[:, 6:] - got[:, 6:]).max()) > 1e-3


def test_partition_specs_fall_back_when_not_divisible():
    mesh = jax.make_mesh((1, 1), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    if jax.device_count() >= 8:
        mesh = jax.make_mesh(
            (2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2
        )
    n = mesh.shape["model"]
    # 6 q heads and 3 KV heads (like SmolLM2's 9/3) do not divide 4; the MLP does.
    cfg = _llama(num_heads=6, num_kv_heads=3, intermediate_size=64, tie_embeddings=False)
    model = nnx.eval_shape(lambda: build_model(cfg, None))
    specs = partition_specs(model, mesh)
    lay = specs["layers"]
    P = jax.sharding.PartitionSpec
    mp = "model" if n > 1 else None
    for name in ("wq", "wk", "wv", "wo", "attn_norm"):
        assert lay[name].get_value() == P(), name
    if n > 1:
        assert lay["w_gate"].get_value() == P(None, None, mp)
        assert lay["w_down"].get_value() == P(None, mp, None)
    assert specs["embed"].get_value() == P() and specs["lm_head"].get_value() == P()
    flat = partition_specs(
        model, jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    )
    assert all(s == P() for s in jax.tree.leaves(flat))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_sharded_model_matches_single_device(name):
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    cfg = DecoderConfig.create(**{**CONFIGS[name].__dict__, "num_heads": 8, "num_kv_heads": 4})
    ref = build_model(cfg, None, seed=6)
    sharded = build_model(cfg, None, seed=6, mesh=mesh)
    assert sharded.layers.wq[...].sharding.spec == jax.sharding.PartitionSpec(
        None, None, "model", None
    )
    assert sharded.layers.wk[...].sharding.spec == jax.sharding.PartitionSpec(
        None, None, "model", None
    )
    toks = _tokens(7, B, 4)
    args = (toks, _pos(4), ref.init_cache(B, S), jnp.int32(0), ALL)
    a, _ = _fwd(ref)(*args)
    b, _ = _fwd(sharded)(*args)
    chex.assert_trees_all_close(a, b, atol=2e-5, rtol=2e-5)


def test_rope_scaling_variants():
    from wasp_jax.models.layers import rope_inv_freq

    base = rope_inv_freq(64, 5e5)
    np.testing.assert_allclose(base[1], 5e5 ** (-2 / 64))
    np.testing.assert_allclose(
        rope_inv_freq(64, 5e5, {"rope_type": "linear", "factor": 4.0}), base / 4
    )
    l3 = dict(
        rope_type="llama3",
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_position_embeddings=8192,
    )
    got = rope_inv_freq(64, 5e5, l3)
    wavelen = 2 * np.pi / base
    hi, lo = wavelen < 8192 / 4, wavelen > 8192 / 1
    np.testing.assert_allclose(got[hi], base[hi])  # short wavelengths untouched
    np.testing.assert_allclose(got[lo], base[lo] / 8)  # long ones interpolated by the factor
    mid = ~(hi | lo)
    assert np.all((got[mid] <= base[mid]) & (got[mid] >= base[mid] / 8))
    with pytest.raises(NotImplementedError, match="yarn"):
        rope_inv_freq(64, 1e4, {"rope_type": "yarn", "factor": 2.0})


def test_config_json_roundtrip_and_validation():
    cfg = _gemma(rope_scaling={"rope_type": "linear", "factor": 8.0})
    again = DecoderConfig.from_json(cfg.to_json())
    assert again == cfg and hash(again) == hash(cfg)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        _llama(num_heads=6, num_kv_heads=4)
    with pytest.raises(ValueError, match="unknown arch"):
        _llama(arch="mamba")


@pytest.mark.slow
def test_bfloat16_params_give_float32_logits_close_to_float32():
    cfg = CONFIGS["gemma3"]
    f32 = build_model(cfg, None, seed=8)
    bf16 = build_model(cfg, None, seed=8, dtype=jnp.bfloat16)
    assert bf16.layers.wq[...].dtype == jnp.bfloat16
    toks = _tokens(9, B, 4)
    a, _ = _fwd(f32)(toks, _pos(4), f32.init_cache(B, S), jnp.int32(0), ALL)
    b, cache = _fwd(bf16)(toks, _pos(4), bf16.init_cache(B, S, jnp.bfloat16), jnp.int32(0), ALL)
    assert b.dtype == jnp.float32 and cache["k"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=0.15, rtol=0.1)
