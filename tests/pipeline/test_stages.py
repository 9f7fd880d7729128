"""The pipeline's stages, selection, ledger and state without models: quotas, generation with
retries and shortfalls, private data loading and splits, selection, allocation, calibration."""

import json
import math

import chex
import jax
import numpy as np
import pytest
from test_cli import run_cli

from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.budget import split_evenly
from wasp_jax.data import DataError, bundled_path, read_labeled_jsonl
from wasp_jax.pipeline.methods import privacy_plan, with_method
from wasp_jax.pipeline.run import private
from wasp_jax.pipeline.run.population import Population, normalize
from wasp_jax.pipeline.run.state import RoundDecision, RunState
from wasp_jax.pipeline.stages import generation, prepare, selection
from wasp_jax.pipeline.stages.vote import NoisyVotes
from wasp_jax.privacy.ledger import RunLedger
from wasp_jax.tasks import load_task

TASK = load_task("imdb")


def test_split_evenly_and_quotas():
    for total in range(0, 30):
        for parts in (1, 2, 3, 7):
            for off in range(3):
                q = split_evenly(total, parts, off)
                assert sum(q) == total and max(q) - min(q) <= 1
    assert split_evenly(5, 2, 0) == [3, 2] and split_evenly(5, 2, 1) == [2, 3]


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
    res = generation.generate_quotas(
        gen, [["p0a", "p0b"], ["p1"]], [4, 2], generation=cfg.generation, task=TASK,
        key=jax.random.key(0), rng=np.random.default_rng(0), seen=seen,
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
    seen = {normalize(W("x"))}
    res = generation.generate_quotas(
        gen, [["p"]], [1], generation=cfg.generation, task=TASK, key=jax.random.key(0),
        rng=np.random.default_rng(0), seen=seen,
    )  # fmt: skip
    assert res[0].texts == [] and res[0].shortfall == 1
    assert res[0].calls == cfg.generation.max_attempts
    built = []

    def builder(attempt, rows, rng):
        built.append(rows)
        return [f"prompt {attempt} {i}" for i in range(rows)]

    gen = Scripted([[W(str(i)) for i in range(16)]])
    res = generation.generate_quotas(
        gen, [builder], [3], generation=cfg.generation, task=TASK, key=jax.random.key(0),
        rng=np.random.default_rng(0), seen=set(),
    )  # fmt: skip
    assert built == [16] and gen.calls[0][1] == 1 and len(res[0].texts) == 3


def _load_private(cfg, task):
    return private.load_private(cfg.data, task, seed=cfg.seed)


def test_load_private_reads_every_record_and_splits_parties():
    path = first_private(40)
    cfg = C.replace(C.base_config(), **{"data.private_path": path})
    texts, labels, party = _load_private(cfg, TASK)
    want = read_labeled_jsonl(path, label_names=TASK.labels)
    assert texts == [r["text"] for r in want] and len(texts) == 40  # every record, in order
    assert labels.dtype == np.int32 and (party == 0).all()
    cfg2 = C.replace(cfg, **{"data.num_parties": 4, "data.party_alpha": 0.5})
    t2, l2, p2 = _load_private(cfg2, TASK)
    assert t2 == texts and set(p2.tolist()) <= {0, 1, 2, 3}
    assert (_load_private(cfg2, TASK)[2] == p2).all()  # deterministic
    even = private.split_parties(np.zeros(10, np.int32), 3, 0.0, np.random.default_rng(0))
    assert sorted(np.bincount(even).tolist()) == [3, 3, 4]


@pytest.mark.parametrize(
    ("key", "value", "flag"),
    [("data.num_private", 40, "--num"), ("data.class_skew_alpha", 0.3, "--class-skew-alpha")],
)
def test_data_dependent_subsampling_is_not_a_run_setting(key, value, flag):
    """A prefix or a class-skewed subsample of the private file is a new file, written before
    the run; a config that still asks the run for one is refused with what to do instead."""
    with pytest.raises(C.ConfigError, match=f"{key} is not a setting") as err:
        C.replace(C.base_config(), **{key: value})
    assert "wasp-jax prepare-private" in str(err.value) and flag in str(err.value)
    assert "data.private_path" in str(err.value)
    with pytest.raises(C.ConfigError, match=key):
        C.apply_overrides(C.base_config(), [f"{key}={value}"])
    section, leaf = key.split(".")
    d = C.base_config().to_dict()
    with pytest.raises(C.ConfigError, match=key):
        C.WaspConfig.from_dict(d | {section: d[section] | {leaf: value}})
    # an older config.json holds the neutral value (the file as it is): it still loads
    assert C.WaspConfig.from_dict(d | {section: d[section] | {leaf: 0}}) == C.base_config()
    assert key not in C.valid_keys()


def test_prepare_private_writes_a_prefix_or_a_skewed_subsample(tmp_path, capsys):
    src = bundled_path("imdb", "private.jsonl")
    source = [json.loads(x) for x in src.read_text().splitlines() if x.strip()]
    out = tmp_path / "first.jsonl"
    assert prepare.prepare_private(src, out, task=TASK, num=30) == 30
    assert [json.loads(x) for x in out.read_text().splitlines()] == source[:30]  # verbatim
    labels = np.array([r["label"] for r in read_labeled_jsonl(src, label_names=TASK.labels)])
    skew = prepare.subsample(labels, num_classes=2, class_skew_alpha=0.3, seed=1)
    again = prepare.subsample(labels, num_classes=2, class_skew_alpha=0.3, seed=1)
    chex.assert_trees_all_equal(skew, again)  # seeded
    assert 0 < len(skew) <= len(labels) and len(set(skew.tolist())) == len(skew)
    other = prepare.subsample(labels, num_classes=2, class_skew_alpha=0.3, seed=2)
    assert not np.array_equal(np.sort(skew), np.sort(other))
    cut = prepare.subsample(labels, num_classes=2, class_skew_alpha=0.3, seed=1, num=5)
    chex.assert_trees_all_equal(cut, skew[:5])
    # the command line: writes the file, says what to set, never a text
    argv = ["prepare-private", "--task", "imdb", "--data", str(src), "--out", str(out)]
    rc, stdout, err = run_cli([*argv, "--class-skew-alpha", "0.3", "--seed", "1"], capsys)
    assert rc == 2 and "exists" in err  # no overwrite without --force
    rc, stdout, err = run_cli(
        [*argv, "--class-skew-alpha", "0.3", "--seed", "1", "--force"], capsys
    )
    assert rc == 0, err
    assert [json.loads(x) for x in out.read_text().splitlines()] == [source[i] for i in skew]
    assert f"data.private_path={out}" in stdout and source[0]["text"][:30] not in stdout + err
    rc, _, err = run_cli([*argv[:-2], "--out", str(tmp_path / "x.jsonl")], capsys)
    assert rc == 2 and "--num" in err and not (tmp_path / "x.jsonl").exists()


def test_load_private_errors_and_label_field(tmp_path):
    cfg = C.base_config()
    with pytest.raises(DataError, match="data.private_path"):
        _load_private(cfg, TASK)
    f = tmp_path / "yelp.jsonl"
    f.write_text(
        "".join(
            json.dumps({"text": f"t{i}", "label": 8, "rating": 1 + i % 5}) + "\n" for i in range(10)
        )
    )
    cfg = C.replace(cfg, task="yelp_rating", **{"data.private_path": str(f)})
    _, labels, _ = _load_private(cfg, load_task("yelp_rating"))
    assert labels.tolist() == [i % 5 for i in range(10)]


def _votes(nearest, farthest=None) -> NoisyVotes:
    release = ("nearest",) if farthest is None else ("nearest", "farthest")
    as32 = lambda h: None if h is None else jax.numpy.asarray(h, jax.numpy.float32)
    return NoisyVotes(as32(nearest), as32(farthest), 1.0, 1.0, release, "add_remove")


def test_select_good_bad_ranks_noisy_counts_in_class():
    labels = np.array([0, 0, 0, 1, 1, 1])
    near = np.array([1.0, 5.0, 3.0, -1.0, -4.0, -2.0])
    votes = _votes(near, np.array([0.0, 1.0, 2.0, 9.0, 8.0, 7.0]))
    mask = np.array([True, True, True, True, True, False])
    sel = lambda flip: C.SelectionConfig(s=2, compat_sign_flip=flip)
    good, bad = selection.select_good_bad(votes, labels, mask, 2, selection=sel(False))
    # bad is ranked among the rows not chosen as good: never the same sample as both
    assert good == [[1, 2], [3, 4]] and bad == [[0], []]
    # compat: the class-1 sum is negative, so the original's ranking flips
    good_c, _ = selection.select_good_bad(votes, labels, mask, 2, selection=sel(True))
    assert good_c[0] == [1, 2] and good_c[1][0] == 4
    good_n, bad_n = selection.select_good_bad(_votes(near), labels, mask, 2, selection=sel(False))
    assert bad_n == [[], []] and good_n == good


def test_plm_allocation():
    w, a = selection.plm_allocation(np.array([2.0, 1.0, 0.0]), 10, tau=1.0, weighting=True)
    assert sum(a) == 10 and a[0] > a[1] > a[2] and abs(w.sum() - 1) < 1e-12
    w, a = selection.plm_allocation(np.array([5.0, 0.0]), 7, tau=1.0, weighting=False)
    assert a in ([4, 3], [3, 4]) and np.allclose(w, 0.5)
    votes = _votes(np.array([3.0, 1.0, -5.0, 0.0]))
    s = selection.plm_vote_scores(votes, np.array([0, 0, 1, 1]), np.ones(4, bool), 2, "robust")
    assert s[0] > s[1]


def test_train_mask():
    cfg = C.replace(C.base_config(), **{"voting.valid_fraction": 0.1})
    m = selection.train_mask(cfg.voting, cfg.seed, 100, 1)
    assert m.sum() == 90 and (selection.train_mask(cfg.voting, cfg.seed, 100, 1) == m).all()
    assert not (selection.train_mask(cfg.voting, cfg.seed, 100, 2) == m).all()  # every round
    assert selection.train_mask(C.base_config().voting, 0, 10, 1).all()


def test_privacy_plan_values():
    cfg = C.replace(C.base_config(), **{"generation.rounds": 4, "generation.budget": 500})
    plan = privacy_plan(cfg)
    assert plan.sensitivity == pytest.approx(1.632981, abs=1e-5)
    assert plan.sigma == pytest.approx(3.781, abs=2e-3)
    classic = privacy_plan(C.replace(cfg, **{"privacy.accounting": "classic"}))
    assert classic.sensitivity == 4.0 and classic.sigma == pytest.approx(9.6896, abs=1e-4)
    assert privacy_plan(with_method(cfg, "zerogen")) is None
    inf = privacy_plan(C.replace(cfg, **{"privacy.epsilon": math.inf}))
    assert inf.sigma == 0.0


def _ledger(cfg, plan) -> RunLedger:
    return RunLedger.new(
        plan,
        method=cfg.method,
        adjacency=cfg.privacy.adjacency,
        num_parties=cfg.data.num_parties,
        num_histograms=cfg.num_histograms,
    )


def test_ledger_idempotent_and_json():
    cfg = C.replace(C.base_config(), **{"privacy.accounting": "rdp"})
    plan = privacy_plan(cfg)
    led = _ledger(cfg, plan)
    led.record(1)
    led.record(1)  # a resumed stage re-records: no second spend
    assert len(led.releases) == 1
    led.record(2)
    again = RunLedger.from_state(json.loads(json.dumps(led.to_state())))
    assert again == led
    rep = again.report()
    assert rep["rounds_released"] == 2 and 0 < rep["epsilon_spent"] <= 4.0 + 1e-6
    assert rep["epsilon"] == plan.epsilon and rep["sigma"] == plan.sigma
    assert rep == json.loads(json.dumps(rep))  # JSON-ready as it is


def test_ledger_without_private_data_and_at_infinite_epsilon():
    zerogen = with_method(C.base_config(), "zerogen")
    rep = _ledger(zerogen, None).report()
    assert rep["private_data_used"] is False and rep["epsilon_spent"] == 0.0
    assert rep["rounds"] == 0 and "no privacy is spent" in rep["note"]
    with pytest.raises(ValueError, match="no privacy plan"):
        _ledger(zerogen, None).record(1)
    cfg = C.replace(C.base_config(), **{"privacy.epsilon": math.inf})
    led = _ledger(cfg, privacy_plan(cfg))
    led.record(1)
    again = RunLedger.from_state(json.loads(json.dumps(led.to_state())))
    assert again.plan.epsilon == math.inf and again.report()["epsilon_spent"] == "inf"


def test_run_state_round_trip():
    cfg = C.replace(C.base_config(), **{"privacy.accounting": "rdp"})
    state = RunState(ledger=_ledger(cfg, privacy_plan(cfg)))
    state.population.extend(["a", "b"], 1, 0, 0)
    state.decisions[1] = RoundDecision([[0], [1]], [[1], [0]], [0.5, 0.5], [3, 4], {"nearest": []})
    state.current.shortfall = 2
    state.done.append("init/0")
    again = RunState.from_json_dict(json.loads(json.dumps(state.to_json_dict())))
    assert again == state and again.decisions[1].selected == {"good": [[0], [1]], "bad": [[1], [0]]}


def test_population_round_trip():
    pop = Population()
    pop.extend(["a", "b"], 1, 0, 0)
    pop.extend(["c"], 0, 1, 2)
    again = Population.from_state(json.loads(json.dumps(pop.to_state())))
    assert again == pop and again.class_counts(2) == [1, 2]
    rows = again.rows(TASK, ["p0", "p1"])
    assert rows[2] == {"text": "c", "label": 0, "label_name": "negative", "plm": "p1", "round": 2}
