"""Tiny Hugging Face folders against what transformers' own PyTorch models computed on them.

The folders (``fixtures/hf``) and the recorded logits, greedy continuations and embeddings
(``fixtures/refs_*.{json,npz}``) were written by ``fixtures/record_refs.py`` in scratch
environments outside the project (torch 2.13.0+cpu with transformers 4.57.6 and
sentence-transformers 5.7.0; transformers 5.24.0 for ``llama-tf5``). Logits must agree to
``LOGIT_TOL`` (absolute; the largest logit is 32, the largest difference seen 9.7e-5) and
greedy tokens exactly.
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

pytestmark = pytest.mark.slow  # tiny HF folders against transformers' own models

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
def test_decoder_logits_match_transformers(name, cache_dir):
    model = _loaded(name, cache_dir).model
    _, arr = ref_of(name)
    ids = jnp.asarray(arr["ids"][None], jnp.int32)
    t = ids.shape[1]
    mask = jnp.ones((1, t), bool)

    def fwd(tok, pos, cache, i):
        return model(tok, pos, cache, i, mask)

    full = jnp.arange(t)[None]
    eager = fwd(ids, full, model.init_cache(1, t), 0)[0]
    jitted = jax.jit(fwd)(ids, full, model.init_cache(1, t), 0)[0]
    for logits in (eager, jitted):
        chex.assert_trees_all_close(logits[0], arr["logits"], atol=LOGIT_TOL, rtol=0)
    # Cached decode (prefill half, then one token at a time) equals the full forward.
    step = jax.jit(fwd)
    h = t // 2
    out, cache = step(ids[:, :h], full[:, :h], model.init_cache(1, t), jnp.int32(0))
    rows = [out[0]]
    for i in range(h, t):
        out, cache = step(ids[:, i : i + 1], full[:, i : i + 1], cache, jnp.int32(i))
        rows.append(out[0])
    chex.assert_trees_all_close(jnp.concatenate(rows), eager[0], atol=1e-4, rtol=1e-5)


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
    from wasp_jax.models.convert import hf_config_to_decoder

    assert _loaded("llama-tf5", cache_dir).config.rope_theta == 5000.0
    # Gemma 3 as transformers 5 writes it: one rope_parameters per layer type.
    base = dict(model_type="gemma3_text", vocab_size=10, hidden_size=8, intermediate_size=8)
    base.update(num_hidden_layers=2, num_attention_heads=2, head_dim=4, sliding_window=4)
    per_type = {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
    }
    cfg = hf_config_to_decoder({**base, "rope_parameters": per_type})
    assert (cfg.rope_theta, cfg.rope_local_theta) == (1e6, 1e4)
    assert cfg.rope_scaling_dict == {"factor": 8.0, "rope_type": "linear"}
    # transformers 4's spelling is unchanged.
    cfg = hf_config_to_decoder({**base, "rope_theta": 1e6})
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.rope_scaling) == (1e6, 1e4, None)


# --------------------------------------------------------------------------- T5 / Flan-T5

SEQ2SEQ = ("t5-gated", "t5-tied")


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_t5_logits_match_transformers(name, cache_dir):
    model = _loaded(name, cache_dir).model
    _, arr = ref_of(name)
    ids = jnp.asarray(arr["ids"][None], jnp.int32)
    dec = jnp.asarray(arr["decoder_ids"][None], jnp.int32)
    t = dec.shape[1]

    def fwd(ids, dec):
        mask = jnp.ones(ids.shape, bool)
        cross = model.cross_kv(model.encode(ids, mask))
        return model.decode(dec, model.init_cache(1, t), 0, cross, mask)[0]

    eager, jitted = fwd(ids, dec), jax.jit(fwd)(ids, dec)
    for logits in (eager, jitted):
        chex.assert_trees_all_close(logits[0], arr["logits"], atol=LOGIT_TOL, rtol=0)
    # Cached decode, one token at a time, equals the teacher-forced chunk; the encoder
    # input left-padded (as the sampler lays prompts out) changes nothing.
    pad = 5
    ids_p = jnp.pad(ids, ((0, 0), (pad, 0)))
    mask = jnp.arange(ids_p.shape[1])[None] >= pad
    cross = jax.jit(lambda i, m: model.cross_kv(model.encode(i, m)))(ids_p, mask)
    step = jax.jit(lambda tok, cache, i: model.decode(tok, cache, i, cross, mask))
    cache = model.init_cache(1, t)
    rows = []
    for i in range(t):
        out, cache = step(dec[:, i : i + 1], cache, jnp.int32(i))
        rows.append(out[0])
    chex.assert_trees_all_close(jnp.concatenate(rows), eager[0], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_t5_greedy_text_matches_transformers(name, cache_dir):
    test_decoder_greedy_text_matches_transformers(name, cache_dir)


def _t5_generator(cache_dir, mesh=None):
    lm = _loaded("t5-gated", cache_dir)
    return plm.Generator(lm, mesh=mesh or sharding.single_device_mesh())


@pytest.mark.parametrize("name", ["t5-gated", "opt"])
def test_prompt_shared_by_samples_equals_unshared(name, cache_dir):
    """T5: one encoder pass per prompt; OPT: one prefilled prompt cache per prompt."""
    gen = plm.Generator(_loaded(name, cache_dir), mesh=sharding.single_device_mesh())
    prompts = [[40, 41, 42, 1], [50, 60, 70, 80, 90, 100, 33, 1], [77, 1]]
    kw = dict(num_samples=3, max_new_tokens=9, temperature=1.4, top_k=50, key=jax.random.key(4))
    shared = gen.generate_ids(prompts, **kw)
    alone = gen.generate_ids(prompts, share_prefix=False, **kw)
    assert [[t.tolist() for t in r] for r in shared.tokens] == [
        [t.tolist() for t in r] for r in alone.tokens
    ]
    for a, b in zip(shared.logprobs, alone.logprobs):
        chex.assert_trees_all_close(a, b, atol=1e-5)
    # The samples differ from each other (the keys decide), so the check has teeth.
    assert len({tuple(t.tolist()) for r in shared.tokens for t in r}) > 3


def test_t5_sharded_generation_equals_one_device(cache_dir):
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    prompts = [[40, 41, 42, 1], [50, 60, 70, 80, 90, 100, 33, 1]]
    kw = dict(num_samples=2, max_new_tokens=8, temperature=1.3, top_p=0.95, key=jax.random.key(5))
    ref = _t5_generator(cache_dir).generate_ids(prompts, **kw)
    mesh = sharding.make_mesh(2, 4, devices=jax.devices()[:8])
    gen = _t5_generator(cache_dir, mesh)
    assert gen.state["encoder"]["layers"]["wq"].sharding.spec[2] == "model"
    out = gen.generate_ids(prompts, **kw)
    assert [[t.tolist() for t in r] for r in out.tokens] == [
        [t.tolist() for t in r] for r in ref.tokens
    ]


def test_t5_stop_string_and_eos(cache_dir):
    gen = _t5_generator(cache_dir)
    meta, _ = ref_of("t5-gated")
    row = meta["greedy"][1]
    full = gen.generate([row["prompt"]], max_new_tokens=12, temperature=0, key=jax.random.key(0))
    stop = full[0][0][2]
    cut = gen.generate(
        [row["prompt"]], max_new_tokens=12, temperature=0, stop=[stop], key=jax.random.key(0)
    )
    assert cut[0][0] == full[0][0][: full[0][0].index(stop)]


# --------------------------------------------------------------------------- sentence-T5

EMBED_TOL = 1e-5


def test_sentence_t5_steps_read_from_its_folder():
    from wasp_jax.models.sentence_t5 import read_st_modules

    steps = read_st_modules(HF / "sentence-t5")
    assert steps.pooling == "mean" and steps.normalize and steps.max_seq_length == 48
    assert [(w.shape, b, a) for w, b, a in steps.dense] == [((32, 24), None, "Identity")]


def test_sentence_t5_older_pooling_spelling_and_unsupported_steps(tmp_path):
    import shutil

    from wasp_jax.models.sentence_t5 import read_st_modules

    folder = tmp_path / "st5"
    shutil.copytree(HF / "sentence-t5", folder)
    old = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False}
    old.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(old))
    assert read_st_modules(folder).pooling == "max"
    old.update(pooling_mode_max_tokens=False, pooling_mode_weightedmean_tokens=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="pooling 'none' is not supported; supported: mean"):
        read_st_modules(folder)


@pytest.mark.parametrize("mesh_shape", [None, (2, 4)])
def test_sentence_t5_embeddings_match_sentence_transformers(mesh_shape, cache_dir):
    from wasp_jax.models.embedder import load_embedder

    if mesh_shape and jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    mesh = None if mesh_shape is None else sharding.make_mesh(*mesh_shape)
    meta, arr = ref_of("sentence-t5")
    emb = load_embedder(str(HF / "sentence-t5"), cache_dir=cache_dir, mesh=mesh, batch_size=4)
    assert emb.dim == 24
    got = emb.embed(meta["texts"])
    chex.assert_trees_all_close(got, arr["embeddings"], atol=EMBED_TOL, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_bert_folder_pooling_and_normalisation_read_from_its_config(tmp_path):
    from tests.models.test_bert import _hf_folder
    from wasp_jax.models.embedder import load_embedder

    folder = tmp_path / "bert-cls"
    tokenizer, _, model = _hf_folder(folder, 3)
    kinds = (("", "Transformer"), ("1_Pooling", "Pooling"))
    mods = [
        {"idx": i, "name": str(i), "path": p, "type": f"sentence_transformers.models.{k}"}
        for i, (p, k) in enumerate(kinds)
    ]
    (folder / "modules.json").write_text(json.dumps(mods))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    texts = ["A good movie.", "Terrible acting, boring plot and a weak story!"]
    emb = load_embedder(str(folder), cache_dir=tmp_path / "cache")
    assert emb.steps == ("cls", False)
    enc = tokenizer(texts, padding="longest", return_tensors="np")
    want = np.asarray(model(enc["input_ids"], enc["attention_mask"]))[:, 0]
    np.testing.assert_allclose(emb.embed(texts), want, atol=1e-5)
    assert not np.allclose(np.linalg.norm(want, axis=1), 1.0)


def test_sentence_t5_folder_with_a_transformers5_tokenizer_class(tmp_path):
    import shutil

    from wasp_jax.models.embedder import load_embedder

    folder = tmp_path / "st5"
    shutil.copytree(HF / "sentence-t5", folder)
    conf_path = folder / "tokenizer_config.json"
    conf = json.loads(conf_path.read_text())
    conf["tokenizer_class"] = "TokenizersBackend"  # what transformers 5 writes
    conf_path.write_text(json.dumps(conf))
    meta, arr = ref_of("sentence-t5")
    got = load_embedder(str(folder), cache_dir=tmp_path / "cache").embed(meta["texts"])
    chex.assert_trees_all_close(got, arr["embeddings"], atol=EMBED_TOL, rtol=0)
