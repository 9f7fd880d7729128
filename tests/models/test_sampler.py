"""Tests of the jitted sampler and `Generator` on tiny random-init decoders (no weights)."""

from __future__ import annotations

import copy
import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from wasp_jax.kernels.padding import bucket_pow2, bucket_prompt_len

from wasp_jax.models import generator as plm
from wasp_jax.models import sampler, sharding

TINY = ("tiny-llama", "tiny-gemma3")


@functools.cache
def _loaded(name: str):
    from wasp_jax.models import load_causal_lm

    return load_causal_lm(name)


@functools.cache
def _gen(name: str = "tiny-llama") -> plm.Generator:
    return plm.Generator(_loaded(name), mesh=sharding.single_device_mesh())


def _prompts(gen: plm.Generator, lengths) -> list[list[int]]:
    """Deterministic prompts of the given lengths over the non-special part of the vocab."""
    rng = np.random.default_rng(sum(lengths))
    hi = gen.config.vocab_size
    special = {gen.tokenizer.bos_id, gen.tokenizer.pad_id, *gen.tokenizer.eos_ids}
    ids = [i for i in range(hi) if i not in special]
    return [[int(t) for t in rng.choice(ids, size=n)] for n in lengths]


def _tokens(out: plm.GenerationOutput) -> list[list[list[int]]]:
    return [[t.tolist() for t in row] for row in out.tokens]


# -- the sampling kernels ------------------------------------------------------------------


def _top_p_reference(probs: np.ndarray, top_p: float) -> np.ndarray:
    keep = np.zeros_like(probs, bool)
    for r, p in enumerate(probs):
        order = np.argsort(-p, kind="stable")
        mass = np.cumsum(p[order])
        n = int(np.searchsorted(mass, top_p - 1e-7)) + 1
        keep[r, order[:n]] = True
    return keep


@pytest.mark.slow
@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("top_p", [1e-6, 0.9, 0.999])
def test_top_p_keep_matches_sorted_cumsum(use_jit, top_p):
    # Row 0 is peaked (nucleus within the 256-candidate fast path), row 1 nearly flat over
    # 1000 tokens (the nucleus needs the bisection fallback for most top_p).
    scale = jnp.asarray([[4.0], [0.3]])
    probs = jax.nn.softmax(scale * jax.random.normal(jax.random.key(0), (2, 1000)), axis=-1)
    fn = jax.jit(sampler.top_p_keep) if use_jit else sampler.top_p_keep
    keep = np.asarray(fn(probs, jnp.float32(top_p)))
    np.testing.assert_array_equal(keep, _top_p_reference(np.asarray(probs), top_p))
    if use_jit:  # each row alone: fast path only (row 0) / fallback only (row 1)
        for row in range(2):
            alone = np.asarray(fn(probs[row : row + 1], jnp.float32(top_p)))
            np.testing.assert_array_equal(alone[0], keep[row])
    if top_p == 0.9:
        assert keep[1].sum() > 256  # the fallback was needed


def test_choose_tokens_respects_top_k():
    logits = jax.random.normal(jax.random.key(1), (2, 50))
    keys = jax.random.split(jax.random.key(2), 2)
    top2 = np.argsort(-np.asarray(logits), axis=-1)[:, :2]
    seen = set()
    for i in range(40):
        step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, i)
        tok = sampler.choose_tokens(
            step_keys,
            logits,
            greedy=False,
            top_k=2,
            use_top_p=False,
            temperature=jnp.float32(5.0),
            top_p=jnp.float32(1.0),
        )
        chex.assert_shape(tok, (2,))
        for r in range(2):
            assert int(tok[r]) in top2[r]
            seen.add((r, int(tok[r])))
    assert len(seen) == 4  # both of the top 2 are drawn at a high temperature


def test_choose_tokens_top_k_beyond_the_vocabulary_with_top_p():
    # A top_k above the vocabulary size keeps every token, as top_k == vocabulary size does.
    logits = jax.random.normal(jax.random.key(3), (4, 50))
    keys = jax.random.split(jax.random.key(4), 4)
    kw = dict(greedy=False, use_top_p=True, temperature=jnp.float32(1.0), top_p=jnp.float32(0.9))
    wide = sampler.choose_tokens(keys, logits, top_k=80, **kw)
    chex.assert_shape(wide, (4,))
    chex.assert_type(wide, jnp.int32)
    np.testing.assert_array_equal(wide, sampler.choose_tokens(keys, logits, top_k=50, **kw))


# -- generation equivalences ---------------------------------------------------------------
# Tests reuse a few shape buckets (N = 16 new-token slots, 64/128 prompt slots) so that the
# whole file compiles about a dozen samplers.

SAMPLING = dict(num_samples=2, max_new_tokens=12, temperature=3.0, top_p=0.95)


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_prefix_shared_equals_unshared_and_keys_decide(name):
    gen = _gen(name)
    prompts = _prompts(gen, [7, 23])
    shared = gen.generate_ids(prompts, share_prefix=True, key=jax.random.key(3), **SAMPLING)
    alone = gen.generate_ids(prompts, share_prefix=False, key=jax.random.key(3), **SAMPLING)
    assert _tokens(shared) == _tokens(alone)
    for a, b in zip(shared.logprobs, alone.logprobs):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=1e-4)
    # The samples of one prompt differ (rows are not copies); the key alone decides them.
    assert _tokens(shared)[1][0] != _tokens(shared)[1][1]
    again = gen.generate_ids(prompts, key=jax.random.key(3), **SAMPLING)
    other = gen.generate_ids(prompts, key=jax.random.key(4), **SAMPLING)
    assert _tokens(again) == _tokens(shared)
    assert _tokens(other) != _tokens(shared)


@pytest.mark.slow
@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("softcap", [None, 30.0])
def test_attention_over_shared_prefix_equals_attention_over_concatenated_cache(use_jit, softcap):
    from wasp_jax.models import layers

    bp, grp, t, h, hkv, dh, sp, s = 2, 3, 2, 4, 2, 8, 5, 4
    ks = jax.random.split(jax.random.key(0), 5)
    q = jax.random.normal(ks[0], (bp * grp, t, h, dh))
    own_k, own_v = (jax.random.normal(k, (bp * grp, s, hkv, dh)) for k in ks[1:3])
    pre_k, pre_v = (jax.random.normal(k, (bp, sp, hkv, dh)) for k in ks[3:5])
    pre_valid = jnp.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], bool)  # row 0 left-padded
    own_mask = layers.attention_mask(1, t, jnp.ones((bp * grp, s), bool))
    pre_mask = layers.prefix_attention_mask(pre_valid, 1, t, None)

    def shared(q, own_k, own_v, pre_k, pre_v):
        pre = (jnp.swapaxes(pre_k, 1, 2), jnp.swapaxes(pre_v, 1, 2), pre_mask)
        return layers.gqa_attention(q, own_k, own_v, own_mask, 0.3, softcap, pre)

    def concatenated(q, own_k, own_v, pre_k, pre_v):
        rep = lambda x: jnp.repeat(x, grp, axis=0)
        k = jnp.concatenate([rep(pre_k), own_k], axis=1)
        v = jnp.concatenate([rep(pre_v), own_v], axis=1)
        mask = jnp.concatenate([rep(pre_mask), own_mask], axis=2)
        return layers.gqa_attention(q, k, v, mask, 0.3, softcap)

    fn = jax.jit(shared) if use_jit else shared
    got = fn(q, own_k, own_v, pre_k, pre_v)
    want = concatenated(q, own_k, own_v, pre_k, pre_v)
    chex.assert_shape(got, (bp * grp, t, h, dh))
    chex.assert_trees_all_close(got, want, atol=1e-5, rtol=1e-5)


@functools.cache
def _gpt2_gen() -> plm.Generator:
    """tiny-llama's tokenizer on a random GPT-2 body (biases, learned positions, fused q/k/v)."""
    from wasp_jax.models import build_model
    from wasp_jax.models.config import DecoderConfig

    lm = _loaded("tiny-llama")
    config = DecoderConfig.create(
        arch="gpt2", vocab_size=lm.config.vocab_size, hidden_size=32, intermediate_size=64,
        num_layers=2, num_heads=4, num_kv_heads=4, head_dim=8, max_position=256,
        hidden_act="gelu_new",
    )  # fmt: skip
    model = build_model(config, None)
    return plm.Generator(
        dataclasses.replace(lm, model=model, config=config), mesh=sharding.single_device_mesh()
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", [*TINY, "gpt2"])
def test_sampled_logprobs_equal_a_full_forward_without_cache(name):
    # The decode path (shared prefix + per-row caches) against one cache-free forward pass
    # over prompt + generated tokens; the 40-token prompt exceeds tiny-gemma3's window.
    gen = _gpt2_gen() if name == "gpt2" else _gen(name)
    prompt = _prompts(gen, [40])[0]
    out = gen.generate_ids(
        [prompt], num_samples=3, max_new_tokens=12, min_new_tokens=12, key=jax.random.key(5)
    )
    model = gen_model(gen)
    for toks, lps in zip(out.tokens[0], out.logprobs[0]):
        seq = jnp.asarray([prompt + toks.tolist()], jnp.int32)
        n = seq.shape[1]
        pos = jnp.arange(n, dtype=jnp.int32)[None]
        cache, ones = model.init_cache(1, n), jnp.ones((1, n), bool)
        logits, _ = model(seq, pos, cache, jnp.int32(0), ones, per_layer=gen.layers)
        logits = logits[0, len(prompt) - 1 : -1, : gen.config.vocab_size].astype(jnp.float32)
        # min_new_tokens suppresses EOS; the sampler's logprobs are renormalised without it.
        full = jax.nn.log_softmax(jnp.where(gen._eos_table, -jnp.inf, logits))
        want = jnp.take_along_axis(full, jnp.asarray(toks)[:, None], axis=-1)[:, 0]
        chex.assert_trees_all_close(jnp.asarray(lps), want, atol=2e-4)


def gen_model(gen: plm.Generator):
    from flax import nnx

    return nnx.merge(gen.graphdef, gen.state)


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_left_padded_batch_equals_rows_alone(name):
    gen = _gen(name)
    # The 90-token prompt moves the batch to the 128-slot bucket: the short rows get far
    # more left padding (beyond tiny-gemma3's 16-token window) than when run alone.
    prompts = _prompts(gen, [3, 17, 90])
    kw = dict(max_new_tokens=16, temperature=0, key=jax.random.key(0))
    batch = gen.generate_ids(prompts, **kw)
    for i, p in enumerate(prompts):
        alone = gen.generate_ids([p], **kw)
        assert batch.tokens[i][0].tolist() == alone.tokens[0][0].tolist()
        np.testing.assert_allclose(batch.logprobs[i][0], alone.logprobs[0][0], atol=2e-4)


@pytest.mark.slow
def test_sampled_rows_do_not_depend_on_chunking():
    gen = _gen()
    prompts = _prompts(gen, [7, 23])
    together = gen.generate_ids(prompts, key=jax.random.key(11), **SAMPLING)
    chunked_gen = copy.copy(gen)  # shares the compiled samplers
    chunked_gen.max_batch_rows = 2
    chunked = chunked_gen.generate_ids(prompts, key=jax.random.key(11), **SAMPLING)
    assert len(chunked.steps) == 2
    assert _tokens(together) == _tokens(chunked)


@pytest.mark.slow
def test_top_k_one_and_tiny_top_p_equal_greedy():
    gen = _gen()
    prompts = _prompts(gen, [7, 23])
    kw = dict(num_samples=2, max_new_tokens=12, key=jax.random.key(5))
    greedy = _tokens(gen.generate_ids(prompts, temperature=0, **kw))
    assert greedy[0][0] == greedy[0][1]
    for extra in (dict(top_k=1), dict(top_k=1, temperature=2.0), dict(top_p=1e-7)):
        out = gen.generate_ids(prompts, **extra, **kw)
        assert _tokens(out) == greedy, extra


# -- stopping --------------------------------------------------------------------------------


@pytest.mark.slow
def test_stop_string_cuts_text_and_exits_early():
    gen = _gen()
    prompts = [gen.encode_prompt("The film was")]
    kw = dict(max_new_tokens=16, temperature=0, key=jax.random.key(0))
    free = gen.generate_ids(prompts, **kw)
    toks = free.tokens[0][0].tolist()
    assert len(toks) == 16 and free.steps == [16]
    # A stop string made of the text of a greedy token from step 3 on.
    decode = gen.tokenizer.decode
    stop = next(decode([t]) for t in toks[3:] if decode([t]).strip())
    first = next(i for i, t in enumerate(toks) if stop in decode([t]))
    out = gen.generate_ids(prompts, stop=[stop], **kw)
    assert out.tokens[0][0].tolist() == toks[: first + 1]
    assert out.steps == [first + 1]  # the while loop exited early
    full = decode(toks)
    [[text]] = gen.generate(["The film was"], stop=[stop, "never-seen"], **kw)
    assert text == full[: full.index(stop)]
    [[text]] = gen.generate(["The film was"], stop=["never-seen"], **kw)
    assert text == full


@pytest.mark.slow
def test_eos_ends_rows_and_min_new_tokens_suppresses_it():
    gen = _gen()
    prompts = [gen.encode_prompt("The film was")]
    kw = dict(max_new_tokens=16, temperature=0, key=jax.random.key(0))
    toks = gen.generate_ids(prompts, **kw).tokens[0][0].tolist()
    eos = toks[2]
    first = toks.index(eos)
    # The same generator (and compiled samplers) with that token declared EOS.
    eos_gen = copy.copy(gen)
    eos_gen._eos_table = np.arange(gen.config.vocab_size) == eos
    out = eos_gen.generate_ids(prompts, **kw)
    assert out.tokens[0][0].tolist() == toks[:first]  # EOS itself is not returned
    assert out.steps == [first + 1]
    out = eos_gen.generate_ids(prompts, min_new_tokens=8, **kw)
    got = out.tokens[0][0].tolist()
    assert len(got) >= 8 and eos not in got[:8]


# -- shapes and compilation ------------------------------------------------------------------


@pytest.mark.slow
def test_compiles_once_per_bucket():
    gen = _gen()
    kw = dict(temperature=0, key=jax.random.key(0))
    shapes, traces = set(gen._samplers), gen.trace_count
    for n, new in [(5, 10), (21, 16), (60, 9)]:  # one prompt bucket (64), one N bucket (16)
        out = gen.generate_ids(_prompts(gen, [n]), max_new_tokens=new, **kw)
        assert len(out.tokens[0][0]) == new
    assert len(set(gen._samplers) - shapes) <= 1
    gen.generate_ids(_prompts(gen, [70]), max_new_tokens=16, **kw)  # the 128 bucket
    assert len(set(gen._samplers) - shapes) <= 2
    assert gen.trace_count - traces == len(set(gen._samplers) - shapes)
    assert len(gen._samplers) <= 8  # the whole file stays within a handful of programs


def test_bucketing():
    assert [bucket_prompt_len(n) for n in (1, 64, 65, 256, 257, 800)] == [
        64,
        64,
        128,
        256,
        384,
        896,
    ]
    assert [bucket_pow2(n) for n in (0, 1, 3, 16, 17)] == [1, 1, 4, 16, 32]
    assert bucket_pow2(3, 8) == 8


def test_long_prompt_truncated_from_the_left():
    gen = _gen()
    limit = gen.config.max_position
    assert limit, "tiny-llama should declare max_position"
    bos = gen.tokenizer.bos_id
    ids = [bos] + _prompts(gen, [limit])[0]
    with pytest.warns(UserWarning, match="truncated from the left"):
        kept = gen._fit_context(ids, 10)
    assert len(kept) == limit - 10 and kept[0] == bos and kept[1:] == ids[-(limit - 11) :]
    with pytest.raises(ValueError, match="lower max_new_tokens"):
        gen._fit_context(ids, limit)


def test_bad_arguments_raise_clear_errors():
    gen = _gen()
    with pytest.raises(TypeError, match="typed PRNG key"):
        gen.generate(["a"], max_new_tokens=4, key=0)
    with pytest.raises(TypeError, match="sequence of strings"):
        gen.generate("a", max_new_tokens=4, key=jax.random.key(0))
    with pytest.raises(ValueError, match="top_p"):
        gen.generate(["a"], max_new_tokens=4, top_p=0.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="min_new_tokens"):
        gen.generate(["a"], max_new_tokens=4, min_new_tokens=5, key=jax.random.key(0))


@pytest.mark.slow
def test_generate_returns_one_list_per_prompt_and_reports_progress():
    gen = _gen()
    seen = []
    texts = gen.generate(
        ["hello there", "a much longer prompt about films"],
        key=jax.random.key(0),
        progress=lambda done, total: seen.append((done, total)),
        **SAMPLING,
    )
    assert len(texts) == 2 and all(len(t) == 2 for t in texts)
    assert all(isinstance(s, str) for row in texts for s in row)
    assert seen[-1] == (4, 4)


# -- the `wasp-jax generate` command ---------------------------------------------------------


def test_cli_generate_unknown_model_is_a_usage_error(capsys):
    from wasp_jax import cli

    main = cli.main

    assert main(["generate", "--model", "no-such-model", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'no-such-model'" in err and "tiny-llama" in err
    assert main(["generate", "--model", "tiny-llama", "--prompt", "hi", "--top-p", "0"]) == 2


@pytest.mark.slow
def test_cli_generate_greedy_json(capsys):
    import json

    from wasp_jax import cli

    main = cli.main

    argv = ["generate", "--model", "tiny-llama", "--prompt", "The film was", "--greedy"]
    assert main([*argv, "--max-new-tokens", "16", "--num-samples", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = _gen().generate(
        ["The film was"], max_new_tokens=16, temperature=0, key=jax.random.key(0)
    )
    assert out["samples"] == [expected[0] * 2]
