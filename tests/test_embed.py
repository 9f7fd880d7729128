"""Embedder: buckets, order, unit norm, the opt-in disk cache, mesh, and the embed CLI."""

import json

import jax
import numpy as np
import pytest
from wasp_jax.kernels.padding import length_bucket, row_bucket

from wasp_jax import cli
from wasp_jax.models import embedder as embed

TEXTS = [
    "The movie was great!",
    "a terrible, boring film with weak acting and a dull plot that went on and on and on",
    "ok",
    "I loved the story.",
    "",
    "The movie was great!",
    "worst waste of time",
]


@pytest.fixture(scope="module")
def tiny():
    return embed.load_embedder("tiny-bert", batch_size=4, max_length=64)


def test_buckets():
    assert [length_bucket(n, 256) for n in (1, 16, 17, 100, 200, 300)] == [
        16, 16, 32, 128, 256, 256
    ]  # fmt: skip
    assert length_bucket(100, 100) == 100
    assert length_bucket(600, 1000) == 1000  # past the last bucket: max_length
    assert [row_bucket(n, 64) for n in (1, 3, 5, 64)] == [1, 4, 8, 64]
    assert row_bucket(3, 64, multiple=8) == 8
    assert row_bucket(100, 64) == 100  # more texts than batch_size: as many rows
    batches = embed.bucketed_batches([3, 9, 1, 5, 7], 2)
    assert [b.tolist() for b in batches] == [[1, 4], [3, 0], [2]]
    ids, mask = embed.pad_batch([[5, 6], [7]], 4, 3, 0)
    assert ids.tolist() == [[5, 6, 0, 0], [7, 0, 0, 0], [0, 0, 0, 0]]
    assert mask.sum(1).tolist() == [2, 1, 0]


def test_order_unit_norm_and_rows_alone(tiny):
    out = tiny.embed(TEXTS)
    assert out.shape == (len(TEXTS), tiny.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out[0], out[5])
    for i in (1, 2, 4):  # a row embedded in a bucketed batch equals it embedded alone
        np.testing.assert_allclose(tiny.embed([TEXTS[i]])[0], out[i], atol=2e-6)
    assert not np.allclose(out[0], out[1])
    assert tiny.embed([]).shape == (0, tiny.dim)
    with pytest.raises(TypeError):
        tiny.embed("one string")


def test_cache_off_by_default(tmp_path):
    emb = embed.load_embedder("tiny-bert", batch_size=4, cache_path=tmp_path / "c")
    emb.embed(TEXTS)
    emb.embed(TEXTS)
    assert emb.num_encoded == 2 * (len(TEXTS) - 1)  # duplicates are encoded once per call
    assert not (tmp_path / "c").exists()


def test_disk_cache_hit_avoids_recompute(tmp_path):
    first = embed.load_embedder("tiny-bert", batch_size=4, cache_path=tmp_path)
    a = first.embed(TEXTS[:4], cache=True)
    assert first.num_encoded == 4
    second = embed.load_embedder("tiny-bert", batch_size=4, cache_path=tmp_path)
    b = second.embed(TEXTS, cache=True)
    assert second.num_encoded == 2  # only "" and "worst waste of time" are new
    np.testing.assert_array_equal(b[:4], a)
    np.testing.assert_allclose(b, first.embed(TEXTS), atol=2e-6)
    third = embed.load_embedder("tiny-bert", batch_size=4, cache_path=tmp_path)
    np.testing.assert_array_equal(third.embed(TEXTS, cache=True), b)
    assert third.num_encoded == 0
    other = embed.load_embedder("tiny-bert", batch_size=4, max_length=8, cache_path=tmp_path)
    other.embed(TEXTS[:1], cache=True)
    assert other.num_encoded == 1  # another max_length is another cache key


def test_cache_needs_path(tiny):
    with pytest.raises(ValueError, match="cache_path"):
        tiny.embed(TEXTS, cache=True)


def test_unknown_model():
    with pytest.raises(ValueError, match="supported: all-minilm-l6-v2, tiny-bert"):
        embed.load_embedder("bert-huge")


def test_mesh_data_parallel_matches(tiny):
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    sharded = embed.load_embedder("tiny-bert", batch_size=4, max_length=64, mesh=mesh)
    np.testing.assert_allclose(sharded.embed(TEXTS), tiny.embed(TEXTS), atol=2e-6)


def test_embed_cli(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t, "label": 0}) + "\n" for t in TEXTS[:3]))
    out = tmp_path / "e.npy"
    assert cli.main(["embed", "--model", "tiny-bert", str(src), "--out", str(out)]) == 0
    arr = np.load(out)
    assert arr.shape == (3, 32)
    txt = tmp_path / "in.txt"
    txt.write_text("hello world\n\nsecond line\n")
    assert cli.main(["embed", "--model", "tiny-bert", str(txt)]) == 0
    assert "(2, 32)" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": 1}\n')
    assert cli.main(["embed", "--model", "tiny-bert", str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_bfloat16_precision_stays_close_to_float32():
    texts = [t for t in TEXTS if t] * 3
    f32 = embed.load_embedder("tiny-bert", batch_size=4, max_length=64)
    bf16 = embed.load_embedder("tiny-bert", batch_size=4, max_length=64, precision="bfloat16")
    a, b = np.asarray(f32.embed(texts)), np.asarray(bf16.embed(texts))
    assert not np.array_equal(a, b)  # the bfloat16 path really ran
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.999, cos.min()
    with pytest.raises(ValueError, match="unknown precision"):
        embed.load_embedder("tiny-bert", precision="float16")
