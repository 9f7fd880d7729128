"""`eval.dp_classifiers`: the evaluation's DP classifiers are releases of their own. The run's
ledger lists them (before they are used) and adds their epsilon to the run's; a resumed
evaluation reuses the saved release instead of drawing or recording it again; nothing
computed from the private data before the noise is written."""

import json
import pathlib

import numpy as np
import pytest
from pipeline_fakes import FakeEmbedder, loaders
from test_cli import write_lines

from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.data import read_jsonl
from wasp_jax.pipeline.run import runner
from wasp_jax.pipeline.stages import eval_classifiers, evaluation

pytestmark = pytest.mark.slow  # small pipeline runs

ROWS = ("DP nearest-centroid classifier", "DP-SGD linear probe")
RELEASES = {"dp_centroid", "dp_sgd_probe"}
ARRAYS = {"dp_centroid_sums", "dp_sgd_probe_kernel", "dp_sgd_probe_bias"}


def _config(tmp_path, **changes):
    test = write_lines(
        tmp_path / "test.jsonl",
        [
            json.dumps({"text": f"a {w} film {i}", "label": i % 2})
            for i, w in enumerate(["awful", "great"] * 4)
        ],
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
        "eval.dp_classifiers": True,
        "eval.subsample_draws": 2,
    }
    base.update(changes)
    return C.replace(C.base_config(), **base)


@pytest.fixture
def fake_stm(monkeypatch):
    """A stand-in STM that scores a training file by its size (the DP classifiers are real)."""

    def evaluate_files(train, test, *, out=None, **kw):
        n = len(pathlib.Path(train).read_text().splitlines())
        acc = {"mean": n / 100, "std": 0.0}
        return {"accuracy": acc, "macro_f1": acc, "mode": "probe", "seeds": kw["seeds"]}

    monkeypatch.setattr(evaluation, "evaluate_files", evaluate_files)


def _hooks():
    g, e = loaders()
    return runner.Hooks(load_generator=g, load_embedder=e)


def _read(wd, name):
    return json.loads((wd / "release" / name).read_text())


def _state_extra(wd):
    state = json.loads((wd / "private" / "checkpoint" / "state.json").read_text())
    return state["ledger"]["extra"]


def test_dp_classifiers_are_their_own_releases(tmp_path, fake_stm):
    wd = tmp_path / "w"
    runner.run(_config(tmp_path), wd, hooks=_hooks())
    led = _read(wd, "privacy.json")
    extra = {e["name"]: e for e in led["extra_releases"]}
    assert set(extra) == RELEASES
    for e in extra.values():
        assert e["sigma"] > 0 and e["epsilon"] == led["epsilon"] and e["delta"] == led["delta"]
        assert e["adjacency"] == led["adjacency"]
    assert extra["dp_sgd_probe"]["steps"] == eval_classifiers.PROBE_STEPS
    assert led["epsilon_total"] == pytest.approx(led["epsilon_spent"] + 2 * led["epsilon"])
    assert led["epsilon_total"] > led["epsilon_spent"] > 0
    assert led["delta_total"] == pytest.approx(3 * led["delta"])
    base = _read(wd, "eval_baselines.json")
    for name in ROWS:
        row = base[name]
        assert row["dp"] is True and row["kind"] == "dp_classifier" and "n_train" not in row
        assert 0 <= row["accuracy"]["mean"] <= 1 and row["epsilon"] == led["epsilon"]
        assert row["test"] == 8
    report = (wd / "release" / "report.md").read_text()
    assert "What the same budget buys as a classifier" in report
    assert "in addition to the run's" in report and "| DP-SGD linear probe |" in report
    sheet = (wd / "release" / "datasheet.md").read_text()
    assert "epsilon total (basic composition)" in sheet
    # a resumed evaluation records nothing twice and reuses the same release
    saved = (wd / "private" / "checkpoint" / "dp_centroid_sums.npy").read_bytes()
    runner.run(_config(tmp_path), wd, hooks=_hooks())
    again = _read(wd, "privacy.json")
    assert again["extra_releases"] == led["extra_releases"]
    assert again["epsilon_total"] == led["epsilon_total"] and len(_state_extra(wd)) == 2
    assert _read(wd, "eval_baselines.json") == base
    assert (wd / "private" / "checkpoint" / "dp_centroid_sums.npy").read_bytes() == saved


def test_a_crash_between_the_releases_does_not_count_twice(tmp_path, fake_stm, monkeypatch):
    wd = tmp_path / "w"

    def crash(*a, **k):
        raise RuntimeError("crash while drawing the probe")

    monkeypatch.setattr(eval_classifiers.vb, "dp_sgd_probe", crash)
    with pytest.raises(RuntimeError, match="crash while drawing"):
        runner.run(_config(tmp_path), wd, hooks=_hooks())
    # the probe was recorded (privacy.json first) before its noise was drawn
    assert {e["name"] for e in _read(wd, "privacy.json")["extra_releases"]} == RELEASES
    assert [e["name"] for e in _state_extra(wd)] == ["dp_centroid"]
    saved = (wd / "private" / "checkpoint" / "dp_centroid_sums.npy").read_bytes()
    monkeypatch.undo()
    fake_stm_again(monkeypatch)
    runner.run(_config(tmp_path), wd, hooks=_hooks())
    led = _read(wd, "privacy.json")
    assert len(led["extra_releases"]) == 2 and len(_state_extra(wd)) == 2
    assert led["epsilon_total"] == pytest.approx(led["epsilon_spent"] + 2 * led["epsilon"])
    assert (wd / "private" / "checkpoint" / "dp_centroid_sums.npy").read_bytes() == saved


def fake_stm_again(monkeypatch):
    def evaluate_files(train, test, *, out=None, **kw):
        acc = {"mean": 0.5, "std": 0.0}
        return {"accuracy": acc, "macro_f1": acc, "mode": "probe", "seeds": kw["seeds"]}

    monkeypatch.setattr(evaluation, "evaluate_files", evaluate_files)


def test_nothing_before_the_noise_is_written(tmp_path, fake_stm):
    wd = tmp_path / "w"
    runner.run(_config(tmp_path), wd, hooks=_hooks())
    private = read_jsonl(first_private(24), what="private")
    texts = [r["text"] for r in private]
    for path in (wd / "release").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".md"):
            content = path.read_text()
            assert not any(t in content for t in texts), path
    ckpt = wd / "private" / "checkpoint"
    assert {p.stem for p in ckpt.glob("dp_*.npy")} == ARRAYS
    # the saved sums are noisy: far from the clean per-class sums of the private embeddings
    emb = FakeEmbedder().embed(texts)
    labels = np.asarray([r["label"] for r in private])
    clean = np.stack([emb[labels == c].sum(0) for c in range(2)])
    noisy = np.load(ckpt / "dp_centroid_sums.npy")
    sigma = {e["name"]: e for e in _read(wd, "privacy.json")["extra_releases"]}["dp_centroid"]
    assert noisy.shape == clean.shape
    assert np.abs(noisy - clean).std() > 0.3 * sigma["sigma"]
