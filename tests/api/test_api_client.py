"""The API generator against the fault-injecting stub: retries, Retry-After, timeouts,
malformed answers, dropped connections, `n` fallback, the response cache, caps and costs,
endpoint and key checks. Nothing here leaves 127.0.0.1."""

from __future__ import annotations

import time

import jax
import pytest

from tests.api.conftest import SENTINEL_KEY
from tests.api.stub_server import StubServer
from wasp_jax.config import ApiConfig, ConfigError
from wasp_jax.models import generator as plm
from wasp_jax.models.api import (
    ApiError,
    ApiGenerator,
    ResponseCache,
    SpendLimitError,
    load_api_generator,
)
from wasp_jax.models.api.client import resolve_base_url

KEY = jax.random.key(0)


def gen(stub, spec="openai-completions:m", cache=None, **api) -> ApiGenerator:
    cfg = ApiConfig(base_url=stub.base_url, **{"max_retries": 2, "timeout": 2.0, **api})
    return load_api_generator(spec, api=cfg, cache_dir=cache)


def ask(g, prompts=("one two three",), n=1, **kw):
    return g.generate(list(prompts), num_samples=n, max_new_tokens=5, key=KEY, **kw)


def test_completions_and_chat_requests(stub):
    out = ask(gen(stub), n=2)
    assert len(out) == 1 and len(out[0]) == 2 and out[0][0] != out[0][1]
    req = stub.requests[-1]
    assert req["path"] == "/v1/completions" and req["body"]["prompt"] == "one two three"
    assert req["body"]["n"] == 2 and isinstance(req["body"]["seed"], int)
    assert req["headers"]["authorization"] == f"Bearer {SENTINEL_KEY}"
    out = ask(gen(stub, "openai:m", system_message="Be brief."))
    body = stub.requests[-1]["body"]
    assert stub.requests[-1]["path"] == "/v1/chat/completions"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one two three"},
    ]
    assert out[0][0].startswith("stub seed=")


def test_load_generator_dispatches_on_the_spec(stub, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    g = plm.load_generator("openai-completions:m")
    assert isinstance(g, ApiGenerator) and g.endpoint.base_url == stub.base_url
    assert ask(g)[0][0].startswith("stub")


def test_stop_strings_cut_on_the_host(stub):
    out = ask(gen(stub), stop=[":"])
    assert out[0][0].startswith("stub seed=") and ":" not in out[0][0]
    assert stub.requests[-1]["body"]["stop"] == [":"]


def test_seeds_distinct_per_row_and_reproducible(stub):
    g = gen(stub, n_per_request=False)
    a = ask(g, prompts=["p q", "p q"], n=2)
    seeds = [r["body"]["seed"] for r in stub.requests]
    assert len(set(seeds)) == 4  # two rows of the same prompt, two samples each
    b = ask(g, prompts=["p q", "p q"], n=2)
    assert a == b and sorted(r["body"]["seed"] for r in stub.requests[4:]) == sorted(seeds)


def test_n_fallback_when_the_server_refuses(api_key):
    stub = StubServer(reject_n=True)
    try:
        g = gen(stub)
        out = ask(g, n=3)
        assert len(set(out[0])) == 3
        assert [r["body"].get("n") for r in stub.requests] == [3, None, None, None]
        assert g.max_n == 1
        assert g.take_usage()["requests"] == 4
    finally:
        stub.close()


def test_n_is_halved_until_the_server_accepts_it(api_key):
    stub = StubServer(reject_n=True)
    stub.max_n = 2
    try:
        g = gen(stub)
        out = ask(g, n=5)
        assert len(set(out[0])) == 5
        assert [r["body"].get("n") for r in stub.requests] == [5, 2, 2, None]
        assert g.max_n == 2
    finally:
        stub.close()


def test_retry_after_is_honoured(stub):
    stub.script[:] = [("429", 1)]
    t0 = time.monotonic()
    out = ask(gen(stub))
    assert time.monotonic() - t0 >= 0.95
    assert len(stub.requests) == 2 and out[0][0].startswith("stub")


@pytest.mark.parametrize("fault", ["500", ("hang", 3), "drop", "malformed", "empty"])
def test_one_fault_is_retried(stub, fault):
    stub.script[:] = [fault]
    g = gen(stub, timeout=1.0)
    out = ask(g)
    assert out[0][0].startswith("stub") and len(stub.requests) == 2
    assert g.take_usage()["failed"] == 0


@pytest.mark.parametrize(
    "fault,words",
    [("500", "status 500"), ("drop", "cannot reach"), (("hang", 3), "did not answer")],
)
def test_persistent_fault_is_a_clear_error(stub, fault, words):
    stub.script[:] = [fault] * 10
    with pytest.raises(ApiError) as err:
        ask(gen(stub, timeout=0.5, max_retries=1))
    msg = str(err.value)
    assert words in msg and stub.base_url in msg and SENTINEL_KEY not in msg
    assert len(msg.splitlines()) == 1


def test_persistent_malformed_answer_is_a_failed_sample(stub):
    stub.script[:] = ["malformed"] * 3
    g = gen(stub, max_retries=2)
    assert ask(g) == [[""]]
    usage = g.take_usage()
    assert usage["failed"] == 1 and len(stub.requests) == 3


def test_cache_makes_a_repeat_free_and_survives_the_server(stub, tmp_path):
    cache = tmp_path / "cache"
    first = ask(gen(stub, cache=cache), prompts=["a b", "c d"], n=2)
    sent = len(stub.requests)
    assert sent == 2
    stub.close()  # the server is gone: the repeat must come from the cache alone
    g = gen(stub, cache=cache)
    assert ask(g, prompts=["a b", "c d"], n=2) == first
    usage = g.take_usage()
    assert usage["requests"] == 0 and usage["cache_hits"] == 4
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) == 4 and not [p for p in files if p.name.endswith(".tmp")]
    for p in files:
        assert SENTINEL_KEY not in p.read_text()
    entries = list(ResponseCache(cache).entries())
    assert {e["request"]["prompt"] for e in entries} == {"a b", "c d"}
    assert all(e["endpoint"] == stub.base_url for e in entries)


def test_cache_key_depends_on_the_request_not_the_key(stub, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ask(gen(stub, cache=cache))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-key")
    g = gen(stub, cache=cache)
    ask(g)
    assert g.take_usage()["cache_hits"] == 1 and len(stub.requests) == 1
    ask(g, temperature=0.5)  # another sampling parameter is another request
    assert len(stub.requests) == 2


def test_cached_run_needs_no_key(stub, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = ask(gen(stub, cache=cache))
    monkeypatch.delenv("OPENAI_API_KEY")
    assert ask(gen(stub, cache=cache)) == first
    with pytest.raises(ApiError, match="OPENAI_API_KEY"):
        ask(gen(stub, cache=cache), prompts=["not cached yet"])


def test_key_from_a_named_variable(stub, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-mine")
    ask(gen(stub, key_envs=("openai-completions:m=MY_KEY",)))
    assert stub.requests[-1]["headers"]["authorization"] == "Bearer sk-mine"


def test_request_cap_stops_before_sending(stub):
    g = gen(stub, max_requests=2, n_per_request=False)
    with pytest.raises(SpendLimitError, match="api.max_requests=2"):
        ask(g, prompts=["a", "b", "c"])
    assert len(stub.requests) == 2


def test_token_and_cost_caps_and_accounting(stub):
    # the stub reports 7 prompt + 5 completion tokens per sample
    g = gen(stub, prices=("openai-completions:m=1000/2000",), concurrency=1)
    ask(g, prompts=["a", "b"])
    usage = g.take_usage()
    assert usage["prompt_tokens"] == 14 and usage["completion_tokens"] == 10
    assert usage["cost_usd"] == pytest.approx((14 * 1000 + 10 * 2000) / 1e6)
    # 12 tokens used after the first request; the second may take 5 more: over 15
    g = gen(stub, max_tokens=15, concurrency=1)
    with pytest.raises(SpendLimitError, match="api.max_tokens=15"):
        ask(g, prompts=["a", "b"])
    assert g.spend.total["requests"] == 1
    # each request costs $0.017; the worst case of the next is $0.01: a third exceeds $0.04
    g = gen(stub, prices=("openai-completions:m=1000/2000",), max_cost=0.04, concurrency=1)
    with pytest.raises(SpendLimitError, match="api.max_cost"):
        ask(g, prompts=["a", "b", "c"])
    assert g.spend.total["requests"] == 2


def test_concurrency_bounds_requests_in_flight(stub):
    stub.script[:] = [("hang", 0.3)] * 8
    g = gen(stub, concurrency=4, timeout=5.0)
    t0 = time.monotonic()
    ask(g, prompts=[f"p{i}" for i in range(8)])
    took = time.monotonic() - t0
    assert 0.55 <= took < 2.0  # two waves of four, not eight in series


def test_endpoint_checks():
    assert resolve_base_url("http://127.0.0.1:8080/v1/", allow_http=False, spec="s").endswith(
        ":8080/v1"
    )
    assert resolve_base_url("http://localhost:1/v1", allow_http=False, spec="s")
    assert resolve_base_url("http://[::1]:1/v1", allow_http=False, spec="s")
    with pytest.raises(ApiError, match="allow_http"):
        resolve_base_url("http://10.0.0.5:8000/v1", allow_http=False, spec="s")
    assert resolve_base_url("http://10.0.0.5:8000/v1", allow_http=True, spec="s")
    with pytest.raises(ApiError, match="credentials"):
        resolve_base_url("https://user:pw@example.com/v1", allow_http=False, spec="s")
    with pytest.raises(ApiError, match="not an http"):
        resolve_base_url("ftp://example.com", allow_http=False, spec="s")


def test_config_entries_are_checked():
    with pytest.raises(ConfigError, match="SPEC=VALUE"):
        ApiConfig(base_urls=("openai:m",))
    with pytest.raises(ConfigError, match="IN/OUT"):
        ApiConfig(prices=("openai:m=3",))
    with pytest.raises(ConfigError, match="twice"):
        ApiConfig(key_envs=("openai:m=A", "openai:m=B"))
    cfg = ApiConfig(base_urls=("openai:m=https://a/v1",), prices=("openai:m=1/2",))
    assert cfg.base_url_of("openai:m") == "https://a/v1" and cfg.base_url_of("openai:x") == ""
    assert cfg.price_of("openai:m") == (1.0, 2.0) and cfg.price_of("openai:x") is None


def test_usage_table_rows_and_totals():
    from wasp_jax.outputs.api_usage import usage_rows, usage_section

    u = {"requests": 2, "cache_hits": 1, "failed": 0, "prompt_tokens": 10}
    u.update(completion_tokens=20, cost_usd=0.5)
    metrics = [{"round": 0, "api_usage": {"openai:m": u}}, {"round": 1}]
    metrics.append({"round": 2, "api_usage": {"openai:m": {**u, "cost_usd": 0.25}}})
    rows = usage_rows(metrics)
    assert rows[0] == (0, "openai:m", 2, 1, 0, 10, 20, "0.5000")
    assert rows[-1] == ("all", "openai:m", 4, 2, 0, 20, 40, "0.7500")
    assert usage_section([{"round": 0}]) == []
