"""The evaluation's zero-shot baseline is as large as the synthetic set: the runner tops up
round 0 with zero-shot rows of the same PLMs (no privacy spent, never in synthetic.jsonl), and
the report compares with that set."""

import json

import pytest
from pipeline_fakes import loaders
from test_cli import write_lines

from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.outputs import report
from wasp_jax.pipeline.run import runner
from wasp_jax.pipeline.stages import evaluation

pytestmark = pytest.mark.slow  # two small pipeline runs


def _config(tmp_path, **changes):
    test = write_lines(
        tmp_path / "test.jsonl",
        [json.dumps({"text": f"a review {i}", "label": i % 2}) for i in range(4)],
    )
    base = {
        "data.private_path": first_private(24),
        "generation.plms": ("fake-a", "fake-b"),
        "generation.budget": 36,
        "generation.rounds": 2,
        "generation.batch_size": 8,
        "voting.q": 4,
        "selection.s": 4,
        "runtime.progress": False,
        "eval.test_path": str(test),
    }
    base.update(changes)
    return C.replace(C.base_config(), **base)


@pytest.fixture
def fake_stm(monkeypatch):
    """Records the rows each evaluated training file holds; scores by size (a stand-in)."""
    seen = {}

    def evaluate_files(train, test, *, out=None, **kw):
        rows = [json.loads(x) for x in open(train).read().splitlines()]
        seen[str(train).rsplit("/", 1)[-1]] = rows
        acc = {"mean": len(rows) / 100, "std": 0.0}
        res = {"accuracy": acc, "macro_f1": acc, "mode": "probe", "seeds": [0]}
        if out is not None:
            json.dump(res, open(out, "w"))
        return res

    monkeypatch.setattr(evaluation, "evaluate_files", evaluate_files)
    return seen


def test_the_zero_shot_baseline_has_the_synthetic_sets_size(tmp_path, fake_stm):
    g, e = loaders()
    stages = []
    hooks = runner.Hooks(load_generator=g, load_embedder=e, on_stage=stages.append)
    res = runner.run(_config(tmp_path), tmp_path / "w", hooks=hooks)
    synthetic = fake_stm["synthetic.jsonl"]
    start, equal = fake_stm["zero_shot_start.jsonl"], fake_stm["zero_shot_equal.jsonl"]
    n = len(synthetic)
    assert len(start) < n and abs(len(equal) - n) <= 4  # the fakes drop a few rows
    assert equal[: len(start)] == start  # round 0, then the extra zero-shot rows
    extra = [r["text"] for r in equal[len(start) :]]
    assert {r["plm"] for r in equal[len(start) :]} == {"fake-a", "fake-b"}
    assert not set(extra) & {r["text"] for r in synthetic}  # never in the synthetic set
    assert "baseline/0:done" in stages and "baseline/1:done" in stages
    baselines = json.loads((res.release / "eval_baselines.json").read_text())
    assert baselines["zero-shot (equal size)"]["n_train"] == len(equal)
    ledger = json.loads((res.release / "privacy.json").read_text())
    assert ledger["rounds_released"] == 2  # the baseline spends nothing
    note = report._comparison_note(
        {"eval": {"accuracy": {"mean": n / 100}}, "baselines": baselines}
    )
    gain = 100 * (n - len(equal)) / 100
    assert f"changed accuracy by {gain:+.1f} points over the equal-size zero-shot set" in note
    # a resume finds the baseline done and draws nothing again
    again = runner.run(_config(tmp_path), tmp_path / "w", hooks=hooks)
    state = json.loads((tmp_path / "w" / "private" / "checkpoint" / "state.json").read_text())
    assert again.resumed_stages == len(state["done"]) and "baseline/1" in state["done"]
    assert fake_stm["zero_shot_equal.jsonl"] == equal


def test_without_baselines_nothing_extra_is_generated(tmp_path, fake_stm):
    g, e = loaders()
    stages = []
    hooks = runner.Hooks(load_generator=g, load_embedder=e, on_stage=stages.append)
    runner.run(_config(tmp_path, **{"eval.baselines": False}), tmp_path / "w", hooks=hooks)
    assert not any(s.startswith("baseline/") for s in stages)
    assert "zero_shot_equal.jsonl" not in fake_stm
