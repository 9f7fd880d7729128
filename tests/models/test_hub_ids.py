"""Models named by their Hugging Face id, resolved from a hub cache laid out by hand from the
tiny fixture folders (no network: `local_files_only`)."""

import shutil

import chex
import numpy as np
import pytest

from wasp_jax.cli.models_check import check_model
from wasp_jax.errors import UsageError
from wasp_jax.models import hub
from wasp_jax.models.embedder import load_embedder
from wasp_jax.models.loading import load_causal_lm
from wasp_jax.pipeline.run.fingerprint import model_fingerprint

from .test_hf_references import FIXTURES


def _cache(root, repo_id, folder):
    """The hub cache layout: models--owner--name/{refs/main, snapshots/<commit>/files}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(FIXTURES / "hf" / folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    root = tmp_path / "hf" / "hub"
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


def test_a_decoder_by_its_hub_id_loads_like_its_folder(hub_cache, tmp_path):
    snap = _cache(hub_cache, "acme/tiny-llama", "llama-tf5")
    assert hub.cache_dir() == hub_cache and hub.looks_like_hub_id("acme/tiny-llama")
    assert hub.snapshot("acme/tiny-llama") == snap
    by_id = load_causal_lm("acme/tiny-llama", cache_dir=tmp_path / "c1")
    by_path = load_causal_lm(str(snap), cache_dir=tmp_path / "c2")
    assert by_id.name == "tiny-llama"
    chex.assert_trees_all_equal(by_id.model.embed[...], by_path.model.embed[...])
    assert model_fingerprint("acme/tiny-llama") == model_fingerprint(str(snap))
    check_model("acme/tiny-llama", "generation.plms", "plm")  # accepted by the CLI check


def test_an_embedder_by_its_hub_id(hub_cache, tmp_path):
    _cache(hub_cache, "acme/tiny-st5", "sentence-t5")
    emb = load_embedder("acme/tiny-st5", cache_dir=str(tmp_path / "c"))
    out = emb.embed(["a short text", "another one"])
    assert out.shape[0] == 2 and np.all(np.isfinite(out))


def test_an_id_not_in_the_cache_names_the_download_command(hub_cache):
    with pytest.raises(ValueError, match="huggingface-cli download acme/missing"):
        load_causal_lm("acme/missing")
    with pytest.raises(UsageError, match="generation.plms: model 'acme/missing' is not in the"):
        check_model("acme/missing", "generation.plms", "plm")
    assert not hub_cache.exists() or not any(hub_cache.iterdir())  # nothing was downloaded
