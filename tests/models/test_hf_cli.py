"""`wasp-jax generate` and `wasp-jax embed` on the tiny OPT, T5 and sentence-T5 folders print
what transformers' PyTorch models recorded (fixtures/record_refs.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.models.test_hf_references import HF, ref_of
from wasp_jax import cli


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WASP_JAX_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["opt", "t5-gated"])
def test_cli_generate_greedy_prints_the_recorded_text(name, capsys):
    meta, _ = ref_of(name)
    rows = meta["greedy"]
    argv = ["generate", "--model", str(HF / name), "--greedy", "--json"]
    for r in rows:
        argv += ["--prompt", r["prompt"]]
    assert cli.main([*argv, "--max-new-tokens", str(len(rows[0]["new_ids"]))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == [[r["text"]] for r in rows]


def test_cli_embed_sentence_t5_matches_the_recorded_embeddings(tmp_path, capsys):
    meta, arr = ref_of("sentence-t5")
    src = tmp_path / "texts.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in meta["texts"]))
    out = tmp_path / "emb.npy"
    argv = ["embed", "--model", str(HF / "sentence-t5"), str(src), "--out", str(out)]
    assert cli.main(argv) == 0
    assert "shape (4, 24)" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(out), arr["embeddings"], atol=1e-5, rtol=0)


def test_cli_embed_bad_t5_folder_is_a_usage_error(tmp_path, capsys):
    folder = tmp_path / "t5"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "t5"}))
    src = tmp_path / "texts.txt"
    src.write_text("one\n")
    assert cli.main(["embed", "--model", str(folder), str(src)]) == 2
    assert "has no modules.json" in capsys.readouterr().err
