"""A demo-sized run with the tiny OPT and T5 folders among the PLMs and the tiny sentence-T5
folder as the embedder (fixtures/record_refs.py): it completes and writes samples of both."""

import json
import pathlib

import pytest
from test_runner import read, scan_for_private, small_config

import wasp_jax
from wasp_jax.data import bundled_path, read_labeled_jsonl
from wasp_jax.pipeline.run import runner

HF = pathlib.Path(__file__).parents[1] / "models" / "fixtures" / "hf"
PRIVATE = bundled_path("imdb", "private.jsonl")


@pytest.mark.slow
def test_opt_and_t5_folders_among_the_plms(tmp_path, monkeypatch):
    monkeypatch.setenv("WASP_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runner, "_finish", lambda *a: None)
    # Random byte-level models write no spaces: one-word samples must pass, and a
    # one-stage zero-shot prompt keeps the run short.
    spec = json.loads((pathlib.Path(wasp_jax.__file__).parent / "tasks" / "imdb.json").read_text())
    spec.update(name="imdb_tiny", min_words=1)
    spec["zero_shot"] = {"prompt": spec["zero_shot"]["prompt_without_subject"]}
    task = tmp_path / "imdb_tiny.json"
    task.write_text(json.dumps(spec))
    plms = (str(HF / "opt"), str(HF / "t5-gated"))
    cfg = small_config(
        **{
            "task": str(task),
            "generation.plms": plms,
            "embedder.name": str(HF / "sentence-t5"),
            "generation.budget": 16,
            "generation.rounds": 1,
            "generation.max_new_tokens": 8,
            "generation.min_new_tokens": 2,
            "generation.max_attempts": 2,
            "voting.q": 2,
            "selection.s": 2,
        }
    )
    res = runner.run(cfg, tmp_path / "wd")
    rows = [json.loads(x) for x in read(tmp_path / "wd", "synthetic.jsonl").splitlines()]
    assert len(rows) == res.n_synthetic > 0
    assert {r["plm"] for r in rows} == set(plms)
    ledger = json.loads(read(tmp_path / "wd", "privacy.json"))
    assert ledger["rounds_released"] == 1
    private = [r["text"] for r in read_labeled_jsonl(PRIVATE)][:24]
    scan_for_private(tmp_path / "wd", "", private)
