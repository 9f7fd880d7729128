"""Tests for wasp_jax.stages / methods / ledger without models: quotas, generation with
retries and shortfalls, private data loading and splits, selection, allocation, calibration."""

import json
import math

import jax
import numpy as np
import pytest

from wasp_jax import config as C
from wasp_jax import ledger as L
from wasp_jax import methods as M
from wasp_jax import prompts as P
from wasp_jax import stages as S
from wasp_jax.data import DataError, bundled_path
from wasp_jax.tasks import load_task

TASK = load_task("imdb")


def test_split_evenly_and_quotas():
    for total in range(0, 30):
        for parts in (1, 2, 3, 7):
            for off in range(3):
                q = S.split_evenly(total, parts, off)
                assert sum(q) == total and max(q) - min(q) <= 1
    assert S.split_evenly(5, 2, 0) == [3, 2] and S.split_evenly(5, 2, 1) == [2, 3]


class Scripted:
    """Returns scripted continuations; records the calls."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def generate(self, prompts, *, num_samples, key, **kw):
        self.calls.append((list(prompts), num_samples, kw))
        batch = self.script.pop(0)
        return [
            [batch[(i * num_samples + j) % len(batch)] for j in range(num_samples)]
            for i in range(len(prompts))
        ]


def W(tag):
    return f"one two three four five six seven eight nine {tag}."


def test_generate_quotas_retries_dedups_and_never_pads():
    cfg = C.replace(C.base_config(), **{"generation.batch_size": 2, "generation.max_attempts": 3})
    # call 1: class 0 gets 2 chunks (rows 0-3), class 1 one chunk (rows 4-5)
    first = [W("a"), W("a"), "short.", W("b"), W("k"), W("k")]
    second = [W("b"), W("c"), W("m"), W("n")]  # class 0 (1 chunk), class 1 (1 chunk)
    third = ["nope.", "nope."]
    gen = Scripted([first, second, third])
    seen = set()
    res = S.generate_quotas(
        gen, [["p0a", "p0b"], ["p1"]], [4, 2], cfg=cfg, task=TASK, key=jax.random.key(0),
        rng=np.random.default_rng(0), seen=seen,
    )  # fmt: skip
    assert res[0].texts == [W("a"), W("b"), W("c")] and res[0].shortfall == 1
    assert res[1].texts == [W("k"), W("m")] and res[1].shortfall == 0
    assert len(seen) == 5 and res[0].calls == 3
    # one call per attempt for all short classes, full chunks of batch_size (one shape)
    assert [len(c[0]) for c in gen.calls] == [3, 2, 1]
    assert {c[1] for c in gen.calls} == {2}
    assert gen.calls[0][0][2] == "p1" and gen.calls[0][2]["stop"] == ('"',)
    assert gen.calls[0][2]["top_p"] == 0.9


def test_generate_quotas_respects_seen_and_builders():
    cfg = C.base_config()
    gen = Scripted([[W("x")]] * 4)
    seen = {P.normalize(W("x"))}
    res = S.generate_quotas(
        gen, [["p"]], [1], cfg=cfg, task=TASK, key=jax.random.key(0),
        rng=np.random.default_rng(0), seen=seen,
    )  # fmt: skip
    assert res[0].texts == [] and res[0].shortfall == 1
    assert res[0].calls == cfg.generation.max_attempts
    built = []

    def builder(attempt, rows, rng):
        built.append(rows)
        return [f"prompt {attempt} {i}" for i in range(rows)]

    gen = Scripted([[W(str(i)) for i in range(16)]])
    res = S.generate_quotas(
        gen, [builder], [3], cfg=cfg, task=TASK, key=jax.random.key(0),
        rng=np.random.default_rng(0), seen=set(),
    )  # fmt: skip
    assert built == [16] and gen.calls[0][1] == 1 and len(res[0].texts) == 3


def test_load_private_subsample_skew_and_parties():
    path = str(bundled_path("imdb", "private.jsonl"))
    cfg = C.replace(C.base_config(), **{"data.private_path": path, "data.num_private": 40})
    texts, labels, party = S.load_private(cfg, TASK)
    assert len(texts) == 40 and labels.dtype == np.int32 and (party == 0).all()
    cfg2 = C.replace(cfg, **{"data.num_parties": 4, "data.party_alpha": 0.5})
    t2, l2, p2 = S.load_private(cfg2, TASK)
    assert t2 == texts and set(p2.tolist()) <= {0, 1, 2, 3}
    assert (S.load_private(cfg2, TASK)[2] == p2).all()  # deterministic
    cfg3 = C.replace(cfg, **{"data.class_skew_alpha": 0.3, "data.num_private": 0})
    _, l3, _ = S.load_private(cfg3, TASK)
    assert 0 < len(l3) <= 100
    even = S.split_parties(np.zeros(10, np.int32), 3, 0.0, np.random.default_rng(0))
    assert sorted(np.bincount(even).tolist()) == [3, 3, 4]


def test_load_private_errors_and_label_field(tmp_path):
    cfg = C.base_config()
    with pytest.raises(DataError, match="data.private_path"):
        S.load_private(cfg, TASK)
    f = tmp_path / "yelp.jsonl"
    f.write_text(
        "".join(
            json.dumps({"text": f"t{i}", "label": 8, "rating": 1 + i % 5}) + "\n" for i in range(10)
        )
    )
    cfg = C.replace(cfg, task="yelp_rating", **{"data.private_path": str(f)})
    _, labels, _ = S.load_private(cfg, load_task("yelp_rating"))
    assert labels.tolist() == [i % 5 for i in range(10)]


def test_select_good_bad_ranks_noisy_counts_in_class():
    labels = np.array([0, 0, 0, 1, 1, 1])
    votes = {
        "nearest": np.array([1.0, 5.0, 3.0, -1.0, -4.0, -2.0]),
        "farthest": np.array([0.0, 1.0, 2.0, 9.0, 8.0, 7.0]),
    }
    mask = np.array([True, True, True, True, True, False])
    good, bad = M.select_good_bad(votes, labels, mask, 2, s=2, compat_sign_flip=False)
    assert good == [[1, 2], [3, 4]] and bad == [[2, 1], [3, 4]]
    # compat: the class-1 sum is negative, so the original's ranking flips
    good_c, _ = M.select_good_bad(votes, labels, mask, 2, s=2, compat_sign_flip=True)
    assert good_c[0] == [1, 2] and good_c[1][0] == 4
    good_n, bad_n = M.select_good_bad(
        {"nearest": votes["nearest"]}, labels, mask, 2, s=2, compat_sign_flip=False
    )
    assert bad_n == [[], []] and good_n == good


def test_plm_allocation():
    w, a = M.plm_allocation(np.array([2.0, 1.0, 0.0]), 10, tau=1.0, weighting=True)
    assert sum(a) == 10 and a[0] > a[1] > a[2] and abs(w.sum() - 1) < 1e-12
    w, a = M.plm_allocation(np.array([5.0, 0.0]), 7, tau=1.0, weighting=False)
    assert a in ([4, 3], [3, 4]) and np.allclose(w, 0.5)
    s = M.plm_scores(
        np.array([3.0, 1.0, -5.0, 0.0]), np.array([0, 0, 1, 1]), np.ones(4, bool), 2, "robust"
    )
    assert s[0] > s[1]


def test_train_mask():
    cfg = C.replace(C.base_config(), **{"voting.valid_fraction": 0.1})
    m = M.train_mask(cfg, 100, 1)
    assert m.sum() == 90 and (M.train_mask(cfg, 100, 1) == m).all()
    assert not (M.train_mask(cfg, 100, 2) == m).all()  # redrawn every round
    assert M.train_mask(C.base_config(), 10, 1).all()


def test_privacy_plan_values():
    cfg = C.replace(C.base_config(), **{"generation.rounds": 4, "generation.budget": 500})
    plan = M.privacy_plan(cfg)
    assert plan.sensitivity == pytest.approx(1.632981, abs=1e-5)
    assert plan.sigma == pytest.approx(3.531, abs=2e-3)
    classic = M.privacy_plan(C.replace(cfg, **{"privacy.accounting": "classic"}))
    assert classic.sensitivity == 4.0 and classic.sigma == pytest.approx(9.6896, abs=1e-4)
    assert M.privacy_plan(C.with_method(cfg, "zerogen")) is None
    inf = M.privacy_plan(C.replace(cfg, **{"privacy.epsilon": math.inf}))
    assert inf.sigma == 0.0


def test_ledger_idempotent_and_json():
    cfg = C.replace(C.base_config(), **{"privacy.accounting": "rdp"})
    plan = M.privacy_plan(cfg)
    led = L.new_ledger(plan, cfg)
    L.record(led, 1, plan)
    L.record(led, 1, plan)  # a resumed stage re-records: no second spend
    assert len(led["releases"]) == 1
    L.record(led, 2, plan)
    rep = L.report(json.loads(json.dumps(led)))
    assert rep["rounds_released"] == 2 and 0 < rep["epsilon_spent"] <= 4.0 + 1e-6
    assert "accountant" not in rep


def test_population_round_trip():
    pop = S.Population()
    pop.extend(["a", "b"], 1, 0, 0)
    pop.extend(["c"], 0, 1, 2)
    again = S.Population.from_state(json.loads(json.dumps(pop.to_state())))
    assert again == pop and again.class_counts(2) == [1, 2]
    rows = again.rows(TASK, ["p0", "p1"])
    assert rows[2] == {"text": "c", "label": 0, "label_name": "negative", "plm": "p1", "round": 2}
