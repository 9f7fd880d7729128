"""LoRA and DPO on the tiny decoder: a fresh adapter changes nothing, merged equals unmerged,
the sequence log-probabilities and the DPO loss and gradient match NumPy references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from wasp_jax.config.tune import TuneConfig
from wasp_jax.models import generator as plm
from wasp_jax.models import layers, lora
from wasp_jax.tune import dpo
from wasp_jax.tune import weights as tw


@pytest.fixture(scope="module")
def gen():
    return plm.load_generator("tiny-llama")


def _rows(gen, n=4, seed=0):
    rng = np.random.default_rng(seed)
    prompts = [gen.encode_prompt(f"review {i % 3}: ") for i in range(n)]
    comps = [list(rng.integers(3, 250, size=int(rng.integers(2, 7)))) for _ in range(n)]
    return dpo.token_rows(prompts, comps), prompts, comps


def _logits(gen, stacked, tokens):
    """Full-sequence logits of one unpadded row, straight from the model."""
    model = nnx.merge(gen.graphdef, gen.state)
    t = tokens.shape[1]
    pos = jnp.arange(t, dtype=jnp.int32)[None]
    cache = model.init_cache(1, t)
    out, _ = model(tokens, pos, cache, jnp.int32(0), jnp.ones((1, t), bool), per_layer=stacked)
    return np.asarray(out[0], np.float64)


def _random_adapters(stacked, targets, rank=4, seed=1):
    ads = lora.init_adapters(stacked, targets, rank, jax.random.key(seed))
    key = jax.random.key(seed + 1)
    return {
        n: {"a": a["a"], "b": 0.3 * jax.random.normal(jax.random.fold_in(key, i), a["b"].shape)}
        for i, (n, a) in enumerate(ads.items())
    }


def test_a_fresh_adapter_leaves_the_logits_unchanged(gen):
    stacked = tw.stacked(gen)
    targets = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
    ads = lora.init_adapters(stacked, targets, 4, jax.random.key(0))
    assert all(float(jnp.abs(a["b"]).max()) == 0.0 for a in ads.values())
    assert all(float(jnp.abs(a["a"]).max()) > 0.0 for a in ads.values())
    tokens = jnp.asarray([[1, 7, 9, 30, 41, 5, 6]], jnp.int32)
    plain = _logits(gen, stacked, tokens)
    adapted = _logits(gen, lora.wrap(stacked, ads, 2.0), tokens)
    chex.assert_trees_all_equal(plain, adapted)


@pytest.mark.parametrize("jit", [True, False])
def test_merged_equals_unmerged(gen, jit):
    stacked = tw.stacked(gen)
    ads = _random_adapters(stacked, ("wq", "wv", "wo", "w_down"))
    tokens = jnp.asarray([[1, 12, 99, 3, 250, 8]], jnp.int32)

    def both():
        un = _logits(gen, lora.wrap(stacked, ads, 2.0), tokens)
        me = _logits(gen, lora.merge(stacked, ads, 2.0), tokens)
        return un, me

    if jit:
        un, me = both()
    else:
        with jax.disable_jit():
            un, me = both()
    assert np.abs(un - _logits(gen, stacked, tokens)).max() > 1e-3  # the adapter does something
    chex.assert_trees_all_close(un, me, atol=2e-4, rtol=2e-4)


def test_merging_into_the_generator_changes_what_it_samples_and_untuned_restores_it(gen):
    before = [dict(p) for p in gen.layers]
    stacked = tw.stacked(gen)
    ads = _random_adapters(stacked, ("wq", "w_up"))
    key = jax.random.key(3)
    greedy = dict(max_new_tokens=8, temperature=0.0, key=key)
    plain = gen.generate(["abc"], **greedy)
    tw.remember_base(gen)
    try:
        tw.merge_into(gen, ads, 2.0)
        merged_stacked = tw.stacked(gen)
        want = lora.merge(stacked, ads, 2.0)
        chex.assert_trees_all_close(merged_stacked, want, atol=1e-6)
        tuned = gen.generate(["abc"], **greedy)
        with tw.untuned(gen):
            again = gen.generate(["abc"], **greedy)
        assert again == plain
        assert tuned != plain
    finally:
        gen.layers, gen.base_layers = before, None


def test_unfusing_inverts_fusing(gen):
    c = gen.config
    assert "wqkv" in gen.layers[0]  # a single-device model axis fuses q, k and v
    for p in gen.layers:
        split = layers.unfuse_projections(p, c.num_heads, c.num_kv_heads, c.head_dim)
        assert "wqkv" not in split and split["wk"].shape[1:] == (c.num_kv_heads, c.head_dim)
        chex.assert_trees_all_equal(layers.fuse_projections(split), p)


@pytest.mark.parametrize("jit", [True, False])
def test_sequence_logprobs_match_a_numpy_reference(gen, jit):
    rows, prompts, comps = _rows(gen)
    stacked = tw.stacked(gen)
    model = nnx.merge(gen.graphdef, gen.state)
    fn = lambda *a: dpo.sequence_logprobs(model, stacked, *a)
    args = tuple(jnp.asarray(a) for a in (rows.tokens, rows.mask, rows.select, rows.keep))
    if jit:
        got = np.asarray(jax.jit(fn)(*args))
    else:
        with jax.disable_jit():
            got = np.asarray(fn(*args))
    for i, (p, c) in enumerate(zip(prompts, comps)):
        seq = np.asarray([p + c], np.int32)
        logits = _logits(gen, stacked, jnp.asarray(seq))
        logp = (
            logits
            - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))[:, None]
            - logits.max(-1, keepdims=True)
        )
        want = sum(logp[j - 1, seq[0, j]] for j in range(len(p), len(p) + len(c)))
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-3)


def _np_dpo(pc, pr, rc, rr, beta):
    z = beta * ((pc - rc) - (pr - rr))
    loss = np.mean(np.log1p(np.exp(-z)))
    g = -beta / (1 + np.exp(z)) / len(z)  # d loss / d pc; d/d pr is its negative
    return loss, g


@pytest.mark.parametrize("jit", [True, False])
def test_dpo_loss_and_gradient_match_numpy(jit):
    rng = np.random.default_rng(0)
    pc, pr, rc, rr = (rng.normal(-20, 5, 6).astype(np.float32) for _ in range(4))
    beta = 0.3
    fn = lambda a, b: dpo.dpo_loss(a, b, rc, rr, beta)[0]
    vg = jax.value_and_grad(fn, argnums=(0, 1))
    if jit:
        loss, (ga, gb) = jax.jit(vg)(pc, pr)
    else:
        with jax.disable_jit():
            loss, (ga, gb) = vg(pc, pr)
    want, g = _np_dpo(*(x.astype(np.float64) for x in (pc, pr, rc, rr)), beta)
    chex.assert_trees_all_close(float(loss), want, rtol=1e-5)
    chex.assert_trees_all_close(np.asarray(ga), g, rtol=1e-4, atol=1e-7)
    chex.assert_trees_all_close(np.asarray(gb), -g, rtol=1e-4, atol=1e-7)
    _, metrics = dpo.dpo_loss(pc, pr, rc, rr, beta)
    diff = (pc - rc) - (pr - rr)
    chex.assert_trees_all_close(float(metrics["reward_accuracy"]), float(np.mean(diff > 0)))


def test_pair_loss_gradient_matches_finite_differences(gen):
    """The adapters' gradient through the whole model against a central difference along a
    random direction, and at zero adapters the loss is log 2 (policy = reference)."""
    rows, _, _ = _rows(gen, n=4, seed=2)
    stacked = tw.stacked(gen)
    ads = _random_adapters(stacked, ("wq", "w_down"), seed=5)
    ref_fn = dpo.make_reference(gen.graphdef)
    ref = np.asarray(ref_fn(gen.state, stacked, rows.tokens, rows.mask, rows.select, rows.keep))
    batch = {
        "tokens": rows.tokens,
        "mask": rows.mask,
        "select": rows.select,
        "keep": rows.keep,
        "ref": ref,
    }
    tc = TuneConfig(enabled=True)
    loss = lambda a: dpo.pair_loss(
        a, gen.graphdef, gen.state, stacked, batch, scale=tc.alpha / tc.rank, beta=1.0
    )[0]
    zero = jax.tree.map(jnp.zeros_like, ads)
    zero = {n: {"a": ads[n]["a"], "b": z["b"]} for n, z in zero.items()}
    np.testing.assert_allclose(float(jax.jit(loss)(zero)), np.log(2.0), rtol=1e-5)
    grad = jax.jit(jax.grad(loss))(ads)
    key = jax.random.key(9)
    leaves, tree = jax.tree.flatten(ads)
    dirs = [jax.random.normal(jax.random.fold_in(key, i), x.shape) for i, x in enumerate(leaves)]
    direction = jax.tree.unflatten(tree, dirs)
    eps = 1e-3
    shift = lambda s: jax.tree.map(lambda x, d: x + s * eps * d, ads, direction)
    fd = (float(loss(shift(1.0))) - float(loss(shift(-1.0)))) / (2 * eps)
    analytic = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grad), dirs))
    assert abs(analytic) > 1e-3
    np.testing.assert_allclose(analytic, fd, rtol=2e-2, atol=1e-4)
