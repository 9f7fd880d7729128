"""Plumbing of the IMDb table script (experiments.table_imdb): plan, configs, render, resume.

The end-to-end test runs `--quick` (tiny-bert, tiny budgets) with a word-sampling fake PLM, so
it checks the wiring (runner, replay pools, probe, MD/CSV) without the real models.
"""

import csv
import dataclasses
import json
import math

import jax
import numpy as np
import pytest

from experiments import table_imdb as T
from experiments import table_imdb_render as R
from wasp_jax import stm
from wasp_jax.stm import metrics
from wasp_jax.stm.evaluate import PROBE_HPARAMS

POS = "great moving brilliant warm lovely vivid strong fresh superb sharp".split()
NEG = "awful boring dull weak bland clumsy tedious flat poor messy".split()
FILL = "film plot actor scene story cast script camera music ending the a".split()


class WordGenerator:
    """Follows `Generator.generate`: words biased to the sentiment named last in the prompt."""

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, *, num_samples=1, key, max_new_tokens=20, stop=(), **kw):
        self.calls += 1
        out = []
        for i, prompt in enumerate(prompts):
            pos = prompt.rfind("positive") > prompt.rfind("negative")
            row = []
            for j in range(num_samples):
                seed = np.asarray(jax.random.key_data(jax.random.fold_in(key, i * 97 + j)))
                rng = np.random.default_rng(seed.ravel().tolist())
                words = rng.choice((POS if pos else NEG) + FILL, size=int(rng.integers(11, 16)))
                row.append(" ".join(words) + '." more')
            out.append(row)
        return out


def test_plan_has_every_row_and_is_seed_major():
    cells = T.plan_cells(T.Settings(), seeds=3)
    rows = {(c.group, c.row) for c in cells}
    live = {r for g, r in rows if g == "live"}
    assert {"multi-zeroshot", "random-control", "wasp", "wasp-no-contrastive"} <= live
    assert {"wasp-no-weighting", "wasp-eps1", "wasp-eps2", "wasp-eps8", "wasp-epsinf"} <= live
    assert {"zerogen[gemma3-270m]", "aug-pe[smollm2-135m-instruct]"} <= live
    replay = {r for g, r in rows if g == "replay"}
    assert {f"zerogen[{p}]" for p in T.POOLS} | {"wasp", "wasp-epsinf"} <= replay
    assert {("reference", "real-5000"), ("reference", "only-private")} <= rows
    live_seeds = [c.seed for c in cells if c.group == "live"]
    assert live_seeds == sorted(live_seeds) and set(live_seeds) == {0, 1, 2}
    assert len({c.key for c in cells}) == len(cells)


def test_configs_follow_the_settings():
    st = T.Settings()
    by_key = {c.key: c for c in T.plan_cells(st, 1)}
    wasp = T.build_config(by_key["live__wasp__g0"], st)
    assert (wasp.method, wasp.generation.budget, wasp.generation.rounds) == ("wasp", 48, 2)
    assert wasp.generation.initial_size == st.initial and wasp.voting.q == st.q
    assert wasp.eval.test_path == "" and wasp.generation.plms == st.plms
    aug = T.build_config(by_key["live__aug-pe[gemma3-270m]__g0"], st)
    assert aug.method == "aug_pe" and aug.generation.plms == ("gemma3-270m",) and aug.voting.q == 1
    zg = T.build_config(by_key["live__zerogen[gemma3-270m]__g0"], st)
    assert zg.generation.rounds == 0 and zg.generation.plms == ("gemma3-270m",)
    assert T.build_config(by_key["live__wasp-epsinf__g0"], st).privacy.epsilon == math.inf
    rep = T.build_config(by_key["replay__wasp-no-contrastive__g0"], st)
    assert rep.method == "replay" and len(rep.replay.pools) == 6
    assert rep.voting.release == ("nearest",) and rep.generation.budget == st.replay_budget


def test_memo_generator_answers_identical_calls_once():
    inner = WordGenerator()
    gen = T.MemoGenerator(inner)
    a = gen.generate(["a positive review"], num_samples=3, key=jax.random.key(1), top_p=0.9)
    b = gen.generate(["a positive review"], num_samples=3, key=jax.random.key(1), top_p=0.9)
    c = gen.generate(["a positive review"], num_samples=3, key=jax.random.key(2), top_p=0.9)
    assert a == b and a != c and inner.calls == 2 and gen.hits == 1


def test_render_pools_seeds_and_marks_partial(tmp_path):
    runs = tmp_path / "imdb_table_runs"
    runs.mkdir()
    for seed, accs in ((0, [0.70, 0.72]), (1, [0.74, 0.76])):
        rec = {"row": "wasp", "group": "live", "gen_seed": seed, "epsilon": 4.0, "n_train": 48}
        rec.update(accuracy=R.summary(accs), macro_f1=R.summary(accs), seconds=10.0)
        (runs / f"live__wasp__g{seed}.json").write_text(json.dumps(rec))
    planned = [f"live__wasp__g{s}" for s in range(3)] + ["live__multi-zeroshot__g0"]
    meta = {"command": "python -m experiments.table_imdb", "settings": vars_settings()}
    table = R.write_table(tmp_path, meta, planned)
    wasp = table[0]
    assert wasp["status"] == "partial" and wasp["gen_seeds"] == 2
    assert wasp["acc"]["mean"] == pytest.approx(0.73)
    assert wasp["acc"]["std"] == pytest.approx(np.std([0.70, 0.72, 0.74, 0.76], ddof=1))
    assert table[1]["status"] == "not run"
    md = (tmp_path / "imdb_table.md").read_text()
    assert "(PARTIAL)" in md and "73.00 ±" in md and "python -m experiments.table_imdb" in md
    rows = list(csv.DictReader((tmp_path / "imdb_table.csv").open()))
    assert [r["row"] for r in rows] == ["wasp", "multi-zeroshot"]
    assert rows[1]["acc_mean"] == "" and rows[0]["gen_seeds_planned"] == "3"


def vars_settings():
    return dataclasses.asdict(T.Settings())


def test_probe_scores_use_the_library_metrics():
    # one macro-F1 (wasp_jax.stm.metrics, docs/method.md 3.2): the render has no copy of its own
    assert not hasattr(R, "macro_f1")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    x = 2.0 * y[:, None] + rng.normal(size=(80, 4))
    res = T.probe_scores(x[:60], y[:60], x[60:], y[60:], 2)
    for s in range(2):
        probe, _ = stm.train_probe(
            x[:60], y[:60], num_classes=2, key=jax.random.key(s), **PROBE_HPARAMS
        )
        pred = probe.predict(x[60:])
        assert res["macro_f1"]["per_seed"][s] == metrics.macro_f1(y[60:], pred, 2)
        assert res["accuracy"]["per_seed"][s] == metrics.accuracy(y[60:], pred)


def test_pool_zeroshot_takes_file_order_with_class_quotas(shared_data):
    rows = T.pool_zeroshot(("gpt2-xl", "flan-t5-xl"), 9)
    assert len(rows) == 9
    assert [r["plm"] for r in rows].count("gpt2-xl") == 5
    first = T.read_rows(shared_data / "imdb_synthetic" / "gpt2-xl.jsonl")
    pos = [r["text"] for r in first if r["label"] == 1][:2]
    assert [r["text"] for r in rows if r["plm"] == "gpt2-xl" and r["label"] == 1] == pos


@pytest.mark.slow
def test_quick_table_end_to_end_and_resume(shared_data, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["--quick", "--seeds", "1", "--stm-seeds", "2", "--out", str(out)]
    argv += ["--workroot", str(work), "--only", "reference,live__wasp__g0"]
    gen = WordGenerator()
    assert T.main(argv, load_generator=lambda spec, **kw: gen) == 0
    rows = {r["row"] + "/" + r["group"]: r for r in csv.DictReader((out / "imdb_table.csv").open())}
    for name in ("real-60/reference", "only-private/reference", "wasp/live"):
        assert rows[name]["status"] == "done" and rows[name]["stm_seeds"] == "2"
        assert 0.0 <= float(rows[name]["acc_mean"]) <= 1.0
    assert int(rows["wasp/live"]["n_train"]) == T.QUICK.budget
    assert rows["wasp/replay"]["status"] == "not run"
    md = (out / "imdb_table.md").read_text()
    assert "--quick" in md and "| wasp |" in md and "(PARTIAL)" in md
    record = json.loads((out / "imdb_table_runs" / "live__wasp__g0.json").read_text())
    assert record["epsilon"] == 4.0 and record["sigma"] > 0
    calls = gen.calls
    assert T.main(argv, load_generator=lambda spec, **kw: gen) == 0
    assert gen.calls == calls  # resumed: every cell was skipped


@pytest.mark.slow
def test_quick_finetune_table_reuses_the_run_and_writes_its_own_files(shared_data, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    common = ["--quick", "--seeds", "1", "--out", str(out), "--workroot", str(work)]
    gen = WordGenerator()
    probe = common + ["--stm-seeds", "1", "--only", "live__wasp__g0"]
    assert T.main(probe, load_generator=lambda spec, **kw: gen) == 0
    calls = gen.calls
    tune = common + ["--stm", "finetune", "--only", "only-private,live__wasp__g0"]
    assert T.main(tune, load_generator=lambda spec, **kw: gen) == 0
    assert gen.calls == calls  # the finished run was reused, nothing regenerated
    rec = json.loads((out / "imdb_table_finetune_runs" / "live__wasp__g0.json").read_text())
    assert rec["stm"] == "finetune" and len(rec["accuracy"]["per_seed"]) == 1
    # 12 texts: below 200, so no validation split and a fixed budget of >= 64 steps
    assert rec["stm_recipe"]["val_fraction"] == 0.0 and rec["stm_recipe"]["epochs"] == 64
    assert rec["best_epoch"][0] == rec["epochs_run"][0] == 64
    assert T.finetune_recipe(600) == T.FINETUNE_HPARAMS
    rows = [r["row"] for r in csv.DictReader((out / "imdb_table_finetune.csv").open())]
    assert rows == ["only-private", "wasp"]  # rows never run are left out
    md = (out / "imdb_table_finetune.md").read_text()
    assert "fine-tuned" in md and "--stm finetune" in md
    log = (out / "imdb_table_finetune_runs" / "_invocations.jsonl").read_text().splitlines()
    assert [json.loads(x)["command"] for x in log] == [
        "python -m experiments.table_imdb " + " ".join(tune)
    ]
    probe_rows = list(csv.DictReader((out / "imdb_table.csv").open()))
    assert {r["row"] for r in probe_rows if r["status"] == "done"} == {"wasp"}
