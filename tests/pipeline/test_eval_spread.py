"""The evaluation's spread and conclusion: subsample draws of a training set (stratified,
seeded by the draw index), the report's verdict on the gain over the equal-size zero-shot
set against that spread, the sentence on the DP classifiers, and the ledger's extra releases
(no models: made-up numbers and a stand-in STM)."""

import json
import math
import pathlib

import numpy as np
import pytest

from wasp_jax import config as C
from wasp_jax.data import atomic_write_jsonl
from wasp_jax.outputs import report
from wasp_jax.pipeline import methods
from wasp_jax.pipeline.methods import privacy_plan, with_method
from wasp_jax.pipeline.stages import evaluation
from wasp_jax.privacy.ledger import RunLedger
from wasp_jax.stm.evaluate import stratified_subset

# ---------------------------------------------------------------------- the verdict


@pytest.mark.parametrize(
    "gain, std_syn, std_base, want",
    [
        (5.0, 1.0, 1.5, "so the difference is beyond the spread (it exceeds their sum)"),
        (2.0, 1.5, 1.0, "within the spread (at most their sum): not a measurable gain"),
        (2.5, 1.5, 1.0, "within the spread (at most their sum): not a measurable gain"),
        (-4.0, 1.0, 1.0, "beyond the spread (it exceeds their sum): a measurable loss"),
        (-1.0, 1.0, 1.0, "within the spread (at most their sum): not a measurable loss"),
    ],
)
def test_the_verdict_compares_the_gain_with_the_sum_of_the_stds(gain, std_syn, std_base, want):
    text = report.spread_conclusion(gain, std_syn, std_base, "zero-shot")
    assert text.startswith(
        f"; the spread over subsample draws is ±{std_syn:.1f} (synthetic) and "
        f"±{std_base:.1f} (zero-shot), so the difference is "
    )
    assert text.endswith(want)


def _entry(acc, draws=None):
    e = {"accuracy": {"mean": acc, "std": 0.0}, "macro_f1": {"mean": acc, "std": 0.0}}
    if draws is not None:
        arr = np.asarray(draws)
        std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        e["accuracy_draws"] = list(draws)
        e["subsample"] = {"draws": len(draws), "accuracy": {"mean": arr.mean(), "std": std}}
    return e


def _run(syn, equal, **more):
    return {
        "eval": syn,
        "synthetic": [],
        "baselines": {"zero-shot start": _entry(0.5), "zero-shot (equal size)": equal, **more},
    }


def test_the_conclusion_says_beyond_or_within_the_spread():
    beyond = report._comparison_note(
        _run(_entry(0.80, [0.79, 0.80, 0.81]), _entry(0.70, [0.69, 0.70, 0.71]))
    )
    assert (
        "The private data changed accuracy by +10.0 points over the equal-size zero-shot set "
        "on the full sets and by +10.0 on average over the subsample draws; the spread over "
        "subsample draws is ±1.0 (synthetic) and ±1.0 (zero-shot), so the difference is beyond "
        "the spread (it exceeds their sum)."
    ) in beyond
    within = report._comparison_note(
        _run(_entry(0.72, [0.68, 0.72, 0.76]), _entry(0.70, [0.66, 0.70, 0.74]))
    )
    assert "changed accuracy by +2.0 points" in within
    assert "±4.0 (synthetic) and ±4.0 (zero-shot)" in within
    assert "within the spread (at most their sum): not a measurable gain." in within
    worse = report._comparison_note(
        _run(_entry(0.60, [0.59, 0.60, 0.61]), _entry(0.70, [0.70, 0.70, 0.70]))
    )
    assert "by -10.0 points" in worse and "a measurable loss." in worse
    # a lucky full-set score: +5.2 points, but the draws' means differ by +0.7
    lucky = report._comparison_note(
        _run(
            _entry(0.666, [0.636, 0.634, 0.644, 0.636, 0.616]),
            _entry(0.614, [0.654, 0.602, 0.630, 0.618, 0.626]),
        )
    )
    assert "by +5.2 points over the equal-size zero-shot set on the full sets" in lucky
    assert "by +0.7 on average over the subsample draws" in lucky
    assert "within the spread" in lucky


def test_an_evaluation_without_draws_concludes_as_before():
    note = report._comparison_note(_run(_entry(0.72), _entry(0.70)))
    assert "changed accuracy by +2.0 points over the equal-size zero-shot set." in note
    assert "spread" not in note and "DP classifier" not in note
    one = report._comparison_note(_run(_entry(0.72, [0.7]), _entry(0.70, [0.7])))
    assert "spread" not in one  # one draw has no spread
    rows = report._comparison_rows(_run(_entry(0.72), _entry(0.70)))
    assert all(len(r) == 5 for r in rows)  # no draws column


def _classifier(acc):
    return {"accuracy": {"mean": acc}, "macro_f1": {"mean": acc}, "kind": "dp_classifier",
            "dp": True, "epsilon": 4.0, "delta": 1e-5}  # fmt: skip


def test_the_best_dp_classifier_is_compared_with_the_synthetic_set():
    run = _run(
        _entry(0.75, [0.74, 0.75, 0.76]),
        _entry(0.70, [0.70, 0.70, 0.71]),
        **{"DP nearest-centroid classifier": _classifier(0.80),
           "DP-SGD linear probe": _classifier(0.60)},
    )  # fmt: skip
    note = report._comparison_note(run)
    assert (
        "The DP nearest-centroid classifier at the same epsilon scores 80.0 %, 5.0 points above "
        "the synthetic set; its epsilon is spent in addition to the run's."
    ) in note
    names = [r[0] for r in report._comparison_rows(run)]
    assert names == ["synthetic set (this run)", "zero-shot start", "zero-shot (equal size)"]
    section = "\n".join(report._classifier_section(run | {"privacy": {"epsilon_total": 12.0}}))
    assert "What the same budget buys as a classifier" in section
    assert "in addition to the run's: the run's outputs together are epsilon = 12" in section
    assert "| DP-SGD linear probe | 60.0 | 60.0 | 4 | 1e-05 | yes |" in section
    run["baselines"]["DP-SGD linear probe"] = _classifier(0.70)
    run["baselines"]["DP nearest-centroid classifier"] = _classifier(0.72)
    assert "3.0 points below the synthetic set" in report._comparison_note(run)


# ---------------------------------------------------------------------- the draws


def test_stratified_subsets_are_deterministic_and_keep_each_class():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1)
    a = stratified_subset(labels, 0.8, seed=0)
    assert np.array_equal(a, stratified_subset(labels, 0.8, seed=0))
    assert not np.array_equal(a, stratified_subset(labels, 0.8, seed=1))
    assert np.bincount(labels[a]).tolist() == [8, 4, 1]  # round(0.8 n), at least one
    assert np.all(np.diff(a) > 0)
    assert np.array_equal(stratified_subset(labels, 1.0, seed=3), np.arange(16))
    with pytest.raises(ValueError, match="frac"):
        stratified_subset(labels, 0.0, seed=0)


def test_subsample_draws_score_each_draw_on_the_same_test(tmp_path, monkeypatch):
    calls = []

    def files(train, test, **kw):
        rows = [json.loads(x) for x in pathlib.Path(train).read_text().splitlines()]
        calls.append((pathlib.Path(train).name, test, kw, rows))
        acc = {"mean": sum(r["label"] for r in rows) / len(rows), "std": 0.0}
        return {"accuracy": acc, "macro_f1": acc}

    monkeypatch.setattr(evaluation, "evaluate_files", files)
    train = tmp_path / "synthetic.jsonl"
    atomic_write_jsonl(train, [{"text": f"t{i}", "label": int(i < 6)} for i in range(20)])
    common = {"mode": "probe", "seeds": [0, 1], "max_test": 5}
    got = evaluation.subsample_draws(train, "test.jsonl", common, draws=3, frac=0.5)
    assert [c[0] for c in calls] == [f"synthetic.draw{i}.jsonl" for i in range(3)]
    assert [c[2]["seeds"] for c in calls] == [[0], [1], [0]]  # the seeds in turn
    assert all(c[1] == "test.jsonl" and c[2]["max_test"] == 5 for c in calls)
    for i, c in enumerate(calls):  # half of each class, the rows of stratified_subset(i)
        assert [r["label"] for r in c[3]].count(1) == 3 and len(c[3]) == 10
        want = stratified_subset([int(j < 6) for j in range(20)], 0.5, seed=i)
        assert [r["text"] for r in c[3]] == [f"t{j}" for j in want]
    sub = got["subsample"]
    assert got["accuracy_draws"] == [0.3, 0.3, 0.3] and sub["n_train"] == [10, 10, 10]
    assert sub["accuracy"] == {"mean": pytest.approx(0.3), "std": pytest.approx(0.0)}
    assert sub["draws"] == 3 and sub["frac"] == 0.5 and sub["seeds"] == [0, 1, 0]
    again = evaluation.subsample_draws(train, "test.jsonl", common, draws=3, frac=0.5)
    assert again == got  # seeded by the draw index alone
    assert evaluation.subsample_draws(train, "test.jsonl", common, draws=0, frac=0.5) == {}


# ---------------------------------------------------------------------- config and ledger


def test_dp_classifiers_need_a_method_that_reads_private_data():
    zg = with_method(C.base_config(), "zerogen")
    with pytest.raises(C.ConfigError, match=r"eval\.dp_classifiers: method 'zerogen' reads no"):
        methods.resolve(C.replace(zg, **{"eval.dp_classifiers": True}))
    with pytest.raises(C.ConfigError, match=r"eval\.dp_classifiers: privacy\.epsilon is inf"):
        methods.resolve(
            C.replace(C.base_config(), **{"eval.dp_classifiers": True, "privacy.epsilon": math.inf})
        )
    assert methods.resolve(C.replace(C.base_config(), **{"eval.dp_classifiers": True}))
    for key, value in (("eval.subsample_frac", 0.0), ("eval.subsample_draws", -1)):
        with pytest.raises(C.ConfigError, match=key.replace(".", r"\.")):
            C.replace(C.base_config(), **{key: value})


def _ledger():
    plan = privacy_plan(C.base_config())
    led = RunLedger.new(plan, method="wasp", adjacency="add_remove", num_parties=1,
                        num_histograms=2)  # fmt: skip
    led.record(1)
    return led, plan


def test_extra_releases_add_to_the_run_and_are_recorded_once():
    led, plan = _ledger()
    assert "extra_releases" not in led.report() and "epsilon_total" not in led.report()
    info = dict(what="sums", epsilon=plan.epsilon, delta=plan.delta, sigma=1.2, sensitivity=1.0,
                adjacency="add_remove", steps=1)  # fmt: skip
    assert led.record_extra("dp_centroid", **info) is True
    assert led.record_extra("dp_centroid", **info) is False  # a resumed stage: not twice
    with pytest.raises(ValueError, match="recorded as"):
        led.record_extra("dp_centroid", **(info | {"sigma": 2.0}))
    led.record_extra("dp_sgd_probe", **(info | {"steps": 40, "sigma": 7.0}))
    rep = led.report()
    assert [e["name"] for e in rep["extra_releases"]] == ["dp_centroid", "dp_sgd_probe"]
    assert rep["epsilon_total"] == pytest.approx(led.epsilon_spent + 2 * plan.epsilon)
    assert rep["delta_total"] == pytest.approx(3 * plan.delta)
    assert rep["epsilon_spent"] == led.epsilon_spent  # the run's own spend is unchanged
    again = RunLedger.from_state(json.loads(json.dumps(led.to_state())))
    assert again.extra == led.extra and again.epsilon_total == led.epsilon_total
    old = led.to_state()
    del old["extra"]  # a state written before extra releases existed
    assert RunLedger.from_state(old).extra == []
    with pytest.raises(ValueError, match="finite epsilon"):
        led.record_extra("x", **(info | {"sigma": 0.0}))
