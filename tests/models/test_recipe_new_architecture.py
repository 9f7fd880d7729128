"""The recipe of docs/extending_model.md, followed step by step on a toy architecture.

The toy decoder ("toy": RMSNorm, rotary attention, ReLU MLP, tied head) is defined here
with the shared layer helpers, registered with a tiny random config through the public
registry, loaded by name and sampled through the generator's one decode loop. Its greedy
continuation must equal an argmax decode that reruns the whole sequence through the
model's forward pass at every step (no cache, no prefix sharing).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from wasp_jax.models import (
    DecoderConfig,
    build,
    layers,
    load_causal_lm,
    register_architecture,
    register_tiny_model,
    registry,
    sharding,
)
from wasp_jax.models import generator as plm

ARCH, NAME = "toy", "tiny-toy"

# Step 1: the per-layer parameter shapes and the sharding table.
SHARD_AXES = {"wq": 2, "wk": 2, "wv": 2, "wo": 1, "w_in": 2, "w_out": 1}


def toy_layer_shapes(c: DecoderConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer parameter shapes of a toy block."""
    d, h, kv, dh, f = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    return {
        "attn_norm": (d,),
        "wq": (d, h, dh),
        "wk": (d, kv, dh),
        "wv": (d, kv, dh),
        "wo": (h, dh, d),
        "mlp_norm": (d,),
        "w_in": (d, f),
        "w_out": (f, d),
    }


# Step 2: the module, on the shared decoder base and layer helpers.
class ToyModel(layers.CachedDecoder):
    """A toy pre-norm decoder: rotary GQA attention and a ReLU MLP, head tied to the embedding."""

    SHARD_AXES = SHARD_AXES

    def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.config = c = config
        shapes = toy_layer_shapes(c)
        init = {n: layers.fan_in_init(2 if n == "wo" else 1) for n in shapes}
        init.update(attn_norm=layers.const_init(1.0), mlp_norm=layers.const_init(1.0))
        emb = layers.normal_init(0.3)(rngs.params(), (c.vocab_size, c.hidden_size), dtype)
        self.embed = nnx.Param(emb)
        self.layers = layers.Stacked(shapes, c.num_layers, init, rngs=rngs, dtype=dtype)
        self.final_norm = nnx.Param(jnp.ones((c.hidden_size,), dtype))
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
        c, cdt, t = self.config, self.compute_dtype, tokens.shape[1]
        x = jnp.take(self.embed[...], tokens, axis=0)
        cos, sin = layers.rope_tables(positions, layers.rope_inv_freq(c.head_dim, c.rope_theta))
        mask = layers.attention_mask(cache_index, t, kv_mask, c.sliding_window)
        pre_mask, pre_kv = layers.prefix_parts(prefix, cache_index, t, c.sliding_window)

        def layer(h, p, kc, vc, i, pkv):
            a = layers.rms_norm(h, p["attn_norm"], c.norm_eps)
            q, k, v = layers.project_qkv(a, p, c.num_heads, c.num_kv_heads, c.head_dim, cdt)
            q, k = layers.apply_rope(q, cos, sin), layers.apply_rope(k, cos, sin)
            kc, k_all = layers.write_and_read_cache(kc, k, i, cache_index)
            vc, v_all = layers.write_and_read_cache(vc, v, i, cache_index)
            pre = None if pkv is None else (*pkv, pre_mask)
            o = layers.gqa_attention(q, k_all, v_all, mask, c.scale, None, pre)
            h = h + layers.dense(o, p["wo"], cdt, axes=2)
            m = layers.rms_norm(h, p["mlp_norm"], c.norm_eps)
            return (
                h + layers.dense(jax.nn.relu(layers.dense(m, p["w_in"], cdt)), p["w_out"]),
                kc,
                vc,
            )

        params = self.layers.arrays() if per_layer is None else per_layer
        x, cache = layers.scan_layers(layer, x, params, cache, pre_kv)
        if last_only:
            x = x[:, -1:]
        x = layers.rms_norm(x, self.final_norm[...], c.norm_eps)
        logits = jnp.einsum("btd,vd->btv", x, self.embed[...], preferred_element_type=jnp.float32)
        return logits, cache


# Step 3: a tiny config of the new architecture.
def tiny_toy() -> DecoderConfig:
    return DecoderConfig.create(
        arch=ARCH,
        vocab_size=260,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        max_position=512,
    )


@pytest.fixture
def toy_registered():
    """Step 4: register the architecture and its tiny model (removed again afterwards)."""
    register_architecture(ARCH, ToyModel)
    register_tiny_model(NAME, tiny_toy)
    try:
        yield
    finally:
        registry.unregister_tiny_model(NAME)
        build.unregister_architecture(ARCH)


def _argmax_decode(model, prompt: list[int], steps: int) -> list[int]:
    """Greedy tokens by rerunning the whole sequence through the forward pass each step.

    The sequence is right-padded to one length (causal attention: the padding after the
    last real token cannot change its logits), so the forward pass compiles once.
    """
    total = len(prompt) + steps
    graphdef, state = nnx.split(model)

    @jax.jit
    def last_logits(state, tokens, t):
        m = nnx.merge(graphdef, state)
        positions = jnp.arange(total, dtype=jnp.int32)[None]
        cache = m.init_cache(1, total)
        logits, _ = m(tokens, positions, cache, jnp.int32(0), jnp.ones((1, total), bool))
        return logits[0, t - 1]

    seq = np.zeros((1, total), np.int32)
    seq[0, : len(prompt)] = prompt
    for t in range(len(prompt), total):
        seq[0, t] = int(jnp.argmax(last_logits(state, seq, t)))
    return seq[0, len(prompt) :].tolist()


def test_a_registered_architecture_generates_through_the_decode_loop(toy_registered, tmp_path):
    # Step 5: load by name and generate.
    assert NAME in registry.supported()
    loaded = load_causal_lm(NAME, cache_dir=tmp_path)
    assert isinstance(loaded.model, ToyModel)
    gen = plm.Generator(loaded, mesh=sharding.single_device_mesh())
    prompts = [[72, 101, 108, 108, 111], [84, 111, 121, 32, 109, 111, 100, 101, 108, 33, 32]]
    n = 6
    out = gen.generate_ids(prompts, max_new_tokens=n, temperature=0, key=jax.random.key(0))
    for prompt, row in zip(prompts, out.tokens):
        (tokens,) = row
        chex.assert_shape(tokens, (n,))  # no EOS (token 257) among these greedy tokens
        chex.assert_type(tokens, np.int32)
        assert tokens.tolist() == _argmax_decode(loaded.model, prompt, n)
    with pytest.raises(ValueError, match="already registered"):
        register_architecture(ARCH, ToyModel)


def test_an_unregistered_architecture_is_rejected():
    with pytest.raises(ValueError, match="unknown arch 'toy'"):
        tiny_toy()
