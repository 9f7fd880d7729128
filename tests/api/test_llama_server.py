"""The API generator against a real OpenAI-compatible server: llama.cpp (xllamacpp) serving
SmolLM2-135M-Instruct on 127.0.0.1 (`conftest.llama_server`). Both endpoints, `n`, stop
strings, seeds, the cache and the `wasp-jax generate` command."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from tests.api.conftest import SENTINEL_KEY
from wasp_jax.config import ApiConfig
from wasp_jax.models.api import load_api_generator

# a llama.cpp-style API server process, serving the SmolLM2 GGUF of the offline wheel
pytestmark = [pytest.mark.slow, pytest.mark.real_models]

#: The installed command (`make setup` installs the package with its console script).
WASP_JAX = str(pathlib.Path(sys.executable).with_name("wasp-jax"))
PROMPT = 'Write a one-sentence movie review: "'


def gen(url, spec, cache=None, **api):
    return load_api_generator(spec, api=ApiConfig(base_url=url, **api), cache_dir=cache)


@pytest.mark.parametrize("spec", ["openai-completions:smollm2", "openai:smollm2"])
def test_both_endpoints_generate_text(llama_server, api_key, spec):
    g = gen(llama_server, spec)
    out = g.generate(
        [PROMPT, "The movie was"], num_samples=2, max_new_tokens=8, key=jax.random.key(0)
    )
    assert [len(r) for r in out] == [2, 2]
    assert all(isinstance(t, str) for r in out for t in r)
    assert sum(len(t.strip()) > 0 for r in out for t in r) >= 3
    usage = g.take_usage()
    assert usage["requests"] >= 2 and usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0


def test_one_request_per_sample_gives_distinct_samples(llama_server, api_key):
    g = gen(llama_server, "openai-completions:smollm2", n_per_request=False)
    out = g.generate(["The movie was"], num_samples=3, max_new_tokens=8, key=jax.random.key(1))
    assert len(set(out[0])) == 3 and g.take_usage()["requests"] == 3


def test_n_above_the_server_slots_is_split(llama_server, api_key):
    g = gen(llama_server, "openai-completions:smollm2")  # the fixture's server has 4 slots
    out = g.generate(["The movie was"], num_samples=6, max_new_tokens=4, key=jax.random.key(2))
    assert len(out[0]) == 6 and g.max_n == 3
    assert g.take_usage()["requests"] == 3  # n = 6 refused, then two requests of n = 3


def test_seeds_reproduce_and_differ(llama_server, api_key):
    g = gen(llama_server, "openai-completions:smollm2", n_per_request=False, concurrency=1)
    kw = dict(num_samples=1, max_new_tokens=10, temperature=1.0, top_p=1.0)
    a = g.generate(["The movie was"], key=jax.random.key(5), **kw)
    b = g.generate(["The movie was"], key=jax.random.key(5), **kw)
    c = [g.generate(["The movie was"], key=jax.random.key(s), **kw)[0][0] for s in (6, 7)]
    assert a == b
    assert len({a[0][0], *c}) >= 2


def test_stop_strings(llama_server, api_key):
    g = gen(llama_server, "openai-completions:smollm2")
    out = g.generate(
        ["Count: 1, 2, 3, 4, 5, 6, 7,"],
        num_samples=1,
        max_new_tokens=16,
        temperature=0.0,
        stop=[","],
        key=jax.random.key(0),
    )
    assert "," not in out[0][0] and len(out[0][0]) < 8


def test_cache_answers_a_repeat_without_requests(llama_server, api_key, tmp_path):
    a = gen(llama_server, "openai:smollm2", cache=tmp_path / "c")
    first = a.generate(["The movie was"], num_samples=2, max_new_tokens=6, key=jax.random.key(3))
    b = gen(llama_server, "openai:smollm2", cache=tmp_path / "c")
    again = b.generate(["The movie was"], num_samples=2, max_new_tokens=6, key=jax.random.key(3))
    assert again == first
    usage = b.take_usage()
    assert usage["requests"] == 0 and usage["cache_hits"] == 2


@pytest.mark.parametrize("spec", ["openai-completions:smollm2", "openai:smollm2"])
def test_cli_generate(llama_server, spec):
    env = {**os.environ, "OPENAI_BASE_URL": llama_server, "OPENAI_API_KEY": SENTINEL_KEY}
    res = subprocess.run(
        [
            WASP_JAX,
            "generate",
            "--model",
            spec,
            "--prompt",
            "The movie was",
            "--max-new-tokens",
            "8",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["model"] == spec and len(out["samples"][0]) == 1 and out["samples"][0][0].strip()
    assert SENTINEL_KEY not in res.stdout + res.stderr


def test_cli_generate_without_key_is_a_one_line_error(llama_server):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["OPENAI_BASE_URL"] = llama_server
    res = subprocess.run(
        [
            WASP_JAX,
            "generate",
            "--model",
            "openai:smollm2",
            "--prompt",
            "Hi",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 2 and "OPENAI_API_KEY" in res.stderr
