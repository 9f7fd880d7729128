"""WASP+ through the runner: every release in the ledger, replay draws, weights, resume."""

import json
import math
import pathlib

import numpy as np
import pytest
from pipeline_fakes import loaders

from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.data import bundled_path
from wasp_jax.outputs import datasheet
from wasp_jax.pipeline import methods
from wasp_jax.pipeline.methods import privacy_plan
from wasp_jax.pipeline.run import runner
from wasp_jax.privacy.accounting import epsilon_of
from wasp_jax.privacy.release_kinds import measures

pytestmark = pytest.mark.slow  # WASP+ pipeline runs

PRIVATE = bundled_path("imdb", "private.jsonl")


def plus_config(**changes):
    base = {
        "method": "wasp_plus",
        "data.private_path": first_private(24),
        "generation.plms": ("fake-a", "fake-b"),
        "generation.budget": 48,
        "generation.rounds": 2,
        "generation.batch_size": 8,
        "voting.q": 4,
        "selection.s": 3,
        "plus.clusters": 2,
        "generation.num_prompt_variants": 3,
        "runtime.progress": False,
        "privacy.accounting": "rdp",
        "privacy.noise": "seeded",  # resumed and uninterrupted runs compared byte for byte
    }
    base.update(changes)
    return C.replace(C.base_config(), **base)


@pytest.fixture(autouse=True)
def no_report(monkeypatch):
    monkeypatch.setattr(runner, "_finish", lambda *a: None)


def hooks(on_stage=None):
    g, e = loaders()
    return runner.Hooks(load_generator=g, load_embedder=e, on_stage=on_stage)


def read_jsonl(path):
    return [json.loads(x) for x in pathlib.Path(path).read_text().splitlines()]


def test_live_run_ledgers_every_release_within_budget(tmp_path):
    cfg = plus_config()
    res = runner.run(cfg, tmp_path, hooks=hooks())
    ledger = json.loads((tmp_path / "release" / "privacy.json").read_text())
    plan = privacy_plan(cfg)
    kinds = [(k, s, e) for k, s, e in plan.kinds]
    assert [k for k, _, _ in kinds] == ["usefulness", "per_cluster"]
    want = [(t, k, s, e) for t in (1, 2) for k, s, e in kinds]
    got = [(r["round"], r["what"][0], r["sigma"], r["sensitivity"]) for r in ledger["releases"]]
    assert got == want
    assert all(r["measures"] == measures(r["what"][0]) for r in ledger["releases"])
    assert kinds[0][2] == pytest.approx(math.sqrt(2))  # usefulness over K = 2 PLMs
    assert 3.9 < ledger["epsilon_spent"] <= 4.0 and res.epsilon_spent == ledger["epsilon_spent"]
    rows = read_jsonl(tmp_path / "release" / "synthetic.jsonl")
    assert len(rows) == res.n_synthetic
    w = np.array([r["weight"] for r in rows])
    assert w.min() > 0 and w.mean() == pytest.approx(1.0)
    metrics = read_jsonl(tmp_path / "release" / "metrics.jsonl")
    assert len(metrics[1]["noisy_vote_summary"]["usefulness"]) == 2
    assert sum(metrics[1]["plm_budgets"]) == cfg.generation.round_increment(0)
    good, bad = metrics[1]["selected"]["good"], metrics[1]["selected"]["bad"]
    assert all(len(g) == 3 and not set(g) & set(b) for g, b in zip(good, bad))
    # the checkpoint holds public arrays only: synthetic embeddings, centres, weights and the
    # noisy releases (persisted before use, so a resume reuses them instead of redrawing)
    saved = {p.stem for p in (tmp_path / "private" / "checkpoint").glob("*.npy")}
    released = {f"plus_{k}_r{t}" for k, _, _ in kinds for t in (1, 2)}
    assert released <= saved
    assert saved <= {"syn_emb", "plus_centres_r1", "plus_centres_r2", "sample_weights"} | released


def test_resume_after_a_crash_gives_the_same_data(tmp_path):
    cfg = plus_config()
    runner.run(cfg, tmp_path / "a", hooks=hooks())

    def crash(event):
        if event == "r2/gen/1:start":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg, tmp_path / "b", hooks=hooks(crash))
    runner.run(cfg, tmp_path / "b", hooks=hooks())
    for name in ("synthetic.jsonl", "privacy.json"):
        a, b = (tmp_path / x / "release" / name for x in "ab")
        assert a.read_text() == b.read_text()


def test_replay_draws_pool_rows_by_cluster_quotas(tmp_path):
    rng = np.random.default_rng(0)
    pools = []
    for name in ("pool-x", "pool-y", "pool-z"):
        p = tmp_path / f"{name}.jsonl"
        words = ["good", "bad", "film", "plot", "story", "actor", "scene", name]
        p.write_text(
            "".join(
                json.dumps({"text": " ".join(rng.choice(words, 12)) + f" {i}", "label": i % 2})
                + "\n"
                for i in range(120)
            )
        )
        pools.append(str(p))
    cfg = plus_config(**{"replay.pools": tuple(pools)})
    assert methods.get(cfg.method).replays(cfg)
    res = runner.run(cfg, tmp_path / "wd", hooks=hooks())
    rows = read_jsonl(tmp_path / "wd" / "release" / "synthetic.jsonl")
    assert len(rows) == res.n_synthetic == 48
    pool_texts = {json.loads(x)["text"] for p in pools for x in open(p)}
    assert {r["text"] for r in rows} <= pool_texts
    ledger = json.loads((tmp_path / "wd" / "release" / "privacy.json").read_text())
    assert ledger["rounds_released"] == 2 and len(ledger["releases"]) == 4
    assert [k["kind"] for k in ledger["kinds"]] == ["usefulness", "per_cluster"]
    assert ledger["releases"][0]["sensitivity"] == (pytest.approx(math.sqrt(3)))
    datasheet.write_datasheet(tmp_path / "wd")
    sheet = (tmp_path / "wd" / "release" / "datasheet.md").read_text()
    assert "| noisy releases per round | usefulness, per_cluster |" in sheet
    # sigma and epsilon of every kind, from the plan of each (not the first kind's for all)
    plan = privacy_plan(cfg)
    assert "noise std sigma (aggregate)" not in sheet
    assert len({s for _, s, _ in plan.kinds}) == 2  # the kinds differ: one row each
    for (kind, sigma, sens), entry in zip(plan.kinds, ledger["kinds"]):
        eps = epsilon_of([sigma / sens] * 2, cfg.privacy.delta, accountant="rdp")
        assert entry["sigma"] == sigma and entry["releases"] == 2
        assert entry["epsilon"] == pytest.approx(eps, rel=1e-12) and 0 < eps < 4.0
        row = f"| {kind} | {measures(kind)} | {sigma:.4g} | {sens:.4g} | 2 | {eps:.4g} |"
        assert row in sheet, row
    assert "pool-z" in sheet and "fake-a" not in sheet
    # later rounds take rows beyond the file-order prefix (the window is drawn by quotas)
    later = [r for r in rows if r["round"] > 0]
    firsts = {json.loads(x)["text"] for p in pools for x in list(open(p))[:20]}
    assert any(r["text"] not in firsts for r in later)


def test_config_and_plan_refusals():
    with pytest.raises(C.ConfigError, match="sum to 1"):
        plus_config(**{"plus.cluster_share": 0.2})
    with pytest.raises(C.ConfigError, match="plus.clusters"):
        plus_config(**{"plus.clusters": 0})
    with pytest.raises(ValueError, match="accounted with RDP"):
        privacy_plan(plus_config(**{"privacy.accounting": "classic"}))
    with pytest.raises(C.ConfigError, match="no class-centroid release"):
        plus_config(**{"plus.centroid_share": 0.2})
    assert [k for k, _, _ in privacy_plan(plus_config()).kinds] == ["usefulness", "per_cluster"]
