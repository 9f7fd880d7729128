"""WASP runs that mix a local PLM with an API PLM: votes, weights and budgets apply to both,
usage is recorded per PLM and round, the cache holds no private text, the key is written
nowhere, a repeat completes from the cache alone, and a run killed during API generation
resumes without losing or double-counting samples."""

from __future__ import annotations

import json
import logging
import pathlib

import pytest

from tests.api.conftest import SENTINEL_KEY
from tests.pipeline.pipeline_fakes import loaders
from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.data import bundled_path, read_labeled_jsonl
from wasp_jax.models.api import ApiGenerator, ResponseCache, SpendLimitError
from wasp_jax.pipeline.run import runner

pytestmark = pytest.mark.slow  # pipeline runs against an API server

PRIVATE = bundled_path("imdb", "private.jsonl")
API_PLM = "openai-completions:smollm2"


def mixed_config(base_url: str, cache: pathlib.Path, **changes):
    base = {
        "data.private_path": first_private(24),
        "generation.plms": ("fake-a", API_PLM),
        "generation.budget": 32,
        "generation.rounds": 2,
        "generation.batch_size": 4,
        "generation.max_new_tokens": 24,
        "generation.num_prompt_variants": 2,
        "generation.api_cache_dir": str(cache),
        "voting.q": 2,
        "selection.s": 2,
        "runtime.progress": False,
        "privacy.accounting": "rdp",
        # two workdirs are compared byte for byte: seeded noise (NOT DP), as in test_runner
        "privacy.noise": "seeded",
        "api.base_url": base_url,
        "api.prices": (f"{API_PLM}=0.5/1.5",),
    }
    base.update(changes)
    return C.replace(C.base_config(), **base)


def hooks(on_stage=None):
    g, e = loaders()
    return runner.Hooks(load_generator=g, load_embedder=e, on_stage=on_stage)


def rows(wd):
    return [json.loads(x) for x in (wd / "release" / "synthetic.jsonl").read_text().splitlines()]


def metrics(wd):
    return [json.loads(x) for x in (wd / "release" / "metrics.jsonl").read_text().splitlines()]


def scan(root: pathlib.Path, text: str, needles: list[bytes]) -> int:
    blobs = [p.read_bytes() for p in root.rglob("*") if p.is_file()] + [text.encode()]
    for blob in blobs:
        for n in needles:
            assert n not in blob
    return len(blobs)


def private_windows() -> list[bytes]:
    out = set()
    for r in read_labeled_jsonl(PRIVATE):
        b = r["text"].encode()
        out.update(b[i : i + 30] for i in range(0, max(len(b) - 30, 0) + 1, 15))
    return sorted(out)


@pytest.mark.slow
@pytest.mark.real_models  # the server serves the SmolLM2 GGUF of the offline wheel
def test_mixed_run_with_a_real_server(llama_server, api_key, tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    cache, wd = tmp_path / "shared_cache", tmp_path / "run1"
    small = {"generation.budget": 16, "generation.rounds": 1, "generation.max_new_tokens": 20}
    cfg = mixed_config(llama_server, cache, **small)
    runner.run(cfg, wd, hooks=hooks())
    got = rows(wd)
    assert len(got) == 16
    assert {r["plm"] for r in got} == {"fake-a", API_PLM}
    ms = metrics(wd)
    assert [m["round"] for m in ms] == [0, 1]
    for m in ms:
        assert m["plm_names"] == ["fake-a", API_PLM] and len(m["plm_weights"]) == 2
        usage = m["api_usage"][API_PLM]
        assert usage["requests"] > 0 and usage["completion_tokens"] > 0
        assert usage["cost_usd"] > 0
    assert all(sum(m["plm_budgets"]) > 0 for m in ms[1:])
    ledger = json.loads((wd / "release" / "privacy.json").read_text())
    assert ledger["rounds_released"] == 1
    # every cached request: public instructions and synthetic samples only
    entries = list(ResponseCache(cache).entries())
    assert len(entries) >= sum(m["api_usage"][API_PLM]["requests"] for m in ms)
    captured = capsys.readouterr()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    scan(cache, "", private_windows())
    assert scan(wd, captured.out + captured.err + logs, [SENTINEL_KEY.encode()]) >= 6
    scan(cache, "", [SENTINEL_KEY.encode()])
    assert SENTINEL_KEY not in (wd / "release" / "config.json").read_text()
    for doc in ("report.md", "datasheet.md"):
        assert "## API usage" in (wd / "release" / doc).read_text()

    # the same config in a fresh workdir, without a key: answered by the shared cache alone
    monkeypatch.delenv("OPENAI_API_KEY")
    wd2 = tmp_path / "run2"
    runner.run(cfg, wd2, hooks=hooks())
    assert rows(wd2) == rows(wd)
    for m in metrics(wd2):
        usage = m["api_usage"][API_PLM]
        assert usage["requests"] == 0 and usage["cache_hits"] > 0


def test_killed_during_api_generation_resumes_exactly(stub, tmp_path, monkeypatch):
    base = mixed_config(stub.base_url, tmp_path / "cache_a")
    runner.run(base, tmp_path / "a", hooks=hooks())
    sent = len(stub.requests)
    assert sent > 0
    want = rows(tmp_path / "a")

    stub.requests.clear()
    calls = {"n": 0}
    real = ApiGenerator.generate

    def killed_once(self, *a, **k):
        out = real(self, *a, **k)  # the answers are cached, then the process dies
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return out

    monkeypatch.setattr(ApiGenerator, "generate", killed_once)
    cfg = C.replace(base, **{"generation.api_cache_dir": str(tmp_path / "cache_b")})
    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg, tmp_path / "b", hooks=hooks())
    monkeypatch.setattr(ApiGenerator, "generate", real)
    runner.run(cfg, tmp_path / "b", hooks=hooks())
    assert rows(tmp_path / "b") == want
    # no request was sent twice: the resumed stage read the answers sent before the kill
    assert len(stub.requests) == sent
    hits = sum(m["api_usage"][API_PLM]["cache_hits"] for m in metrics(tmp_path / "b"))
    assert hits > 0


def test_cap_stops_a_run_and_a_raised_cap_resumes_it(stub, tmp_path):
    cfg = mixed_config(stub.base_url, tmp_path / "cache", **{"api.max_requests": 3})
    with pytest.raises(SpendLimitError) as err:
        runner.run(cfg, tmp_path / "wd", hooks=hooks())
    assert "api.max_requests=3" in str(err.value)
    done = (tmp_path / "wd" / "release" / "synthetic.jsonl").exists()
    assert not done or len(rows(tmp_path / "wd")) < 32
    raised = C.replace(cfg, **{"api.max_requests": 10_000})
    runner.run(raised, tmp_path / "wd", hooks=hooks())
    assert len(rows(tmp_path / "wd")) == 32
