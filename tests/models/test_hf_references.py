"""Tiny Hugging Face folders against what transformers' own PyTorch models computed on them.

The folders (``fixtures/hf``) and the recorded logits, greedy continuations and embeddings
(``fixtures/refs_*.{json,npz}``) were written by ``fixtures/record_refs.py`` in scratch
environments outside the project (torch 2.13.0+cpu with transformers 4.57.6 and
sentence-transformers 5.7.0; transformers 5.24.0 for ``llama-tf5``). Logits must agree to
``LOGIT_TOL`` (absolute, on logits of magnitude up to about 40) and greedy tokens exactly.
"""

from __future__ import annotations

import functools
import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wasp_jax.models import generator as plm
from wasp_jax.models import sharding
from wasp_jax.models.loading import load_causal_lm

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
HF = FIXTURES / "hf"
LOGIT_TOL = 2e-4
DECODERS = ("opt", "opt-350m-style", "llama-tf5")


@functools.cache
def refs(tag: str) -> tuple[dict, dict]:
    meta = json.loads((FIXTURES / f"refs_{tag}.json").read_text())
    with np.load(FIXTURES / f"refs_{tag}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def ref_of(name: str) -> tuple[dict, dict]:
    meta, arrays = refs("tf5" if name == "llama-tf5" else "tf4")
    own = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(name + "/")}
    return meta[name], own


@functools.cache
def _loaded(name: str, cache: str):
    return load_causal_lm(str(HF / name), cache_dir=cache)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("hf_ref_cache"))


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("use_jit", [False, True])
def test_decoder_logits_match_transformers(name, use_jit, cache_dir):
    lm = _loaded(name, cache_dir)
    _, arr = ref_of(name)
    ids = jnp.asarray(arr["ids"][None], jnp.int32)
    t = ids.shape[1]

    def fwd(ids):
        cache = lm.model.init_cache(1, t)
        return lm.model(ids, jnp.arange(t)[None], cache, 0, jnp.ones((1, t), bool))[0]

    logits = (jax.jit(fwd) if use_jit else fwd)(ids)
    chex.assert_trees_all_close(logits[0], arr["logits"], atol=LOGIT_TOL, rtol=0)
    # Cached decode (prefill half, then one token at a time) equals the full forward.
    cache = lm.model.init_cache(1, t)
    mask = jnp.ones((1, t), bool)
    h = t // 2
    step, cache = lm.model(ids[:, :h], jnp.arange(h)[None], cache, 0, mask)
    rows = [step[0]]
    for i in range(h, t):
        step, cache = lm.model(ids[:, i : i + 1], jnp.full((1, 1), i), cache, i, mask)
        rows.append(step[0])
    chex.assert_trees_all_close(jnp.concatenate(rows), logits[0], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_greedy_text_matches_transformers(name, cache_dir):
    meta, _ = ref_of(name)
    gen = plm.Generator(_loaded(name, cache_dir), mesh=sharding.single_device_mesh())
    rows = meta["greedy"]
    assert [gen.encode_prompt(r["prompt"]) for r in rows] == [r["prompt_ids"] for r in rows]
    n = len(rows[0]["new_ids"])
    texts = gen.generate(
        [r["prompt"] for r in rows], max_new_tokens=n, temperature=0, key=jax.random.key(0)
    )
    assert [t[0] for t in texts] == [r["text"] for r in rows]
    out = gen.generate_ids(
        [r["prompt_ids"] for r in rows], max_new_tokens=n, temperature=0, key=jax.random.key(0)
    )
    assert [o[0].tolist() for o in out.tokens] == [r["new_ids"] for r in rows]


def test_opt_sharded_generation_equals_one_device(cache_dir):
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    lm = _loaded("opt", cache_dir)
    prompts = [[2, 40, 41, 42], [2, 50, 60, 70, 80, 90, 100, 33, 34]]
    kw = dict(num_samples=2, max_new_tokens=10, temperature=1.3, top_p=0.95)
    one = plm.Generator(lm, mesh=sharding.single_device_mesh())
    ref = one.generate_ids(prompts, key=jax.random.key(3), **kw)
    mesh = sharding.make_mesh(2, 4, devices=jax.devices()[:8])
    out = plm.Generator(lm, mesh=mesh).generate_ids(prompts, key=jax.random.key(3), **kw)
    assert [[t.tolist() for t in r] for r in out.tokens] == [
        [t.tolist() for t in r] for r in ref.tokens
    ]


def test_transformers5_folder_names_an_unknown_tokenizer_class():
    conf = json.loads((HF / "llama-tf5" / "tokenizer_config.json").read_text())
    assert conf["tokenizer_class"] == "TokenizersBackend"
    cfg = json.loads((HF / "llama-tf5" / "config.json").read_text())
    assert "rope_theta" not in cfg and cfg["rope_parameters"]["rope_theta"] == 5000.0
    meta, _ = refs("tf5")
    assert meta["versions"]["transformers"].startswith("5.")


def test_transformers5_rope_parameters_are_read(cache_dir):
    assert _loaded("llama-tf5", cache_dir).config.rope_theta == 5000.0
