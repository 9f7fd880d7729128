"""Tuning the PLMs on DP feedback through the runner (WASP-proto, ``tune.enabled``): the
training sees only synthetic text and post-noise margins, spends no privacy, is stated in the
datasheet, and a run killed during tuning resumes to the same outputs."""

import json

import numpy as np
import pytest
from pipeline_fakes import loaders, worded

from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax import data as data_io
from wasp_jax.errors import ConfigError
from wasp_jax.models import generator as plm
from wasp_jax.pipeline import methods
from wasp_jax.pipeline.run import runner
from wasp_jax.pipeline.stages import prototypes, tuning

KIND = "class_prototypes"


def _config(**changes):
    base = {
        "method": "wasp_proto",
        "data.private_path": first_private(24),
        "generation.plms": ("tiny-llama",),
        "generation.budget": 24,
        "generation.rounds": 2,
        "generation.batch_size": 8,
        "generation.max_new_tokens": 16,
        "generation.min_new_tokens": 8,
        "selection.s": 2,
        "runtime.progress": False,
        "privacy.epsilon": 2.0,
        "proto.dims": 4,
        "tune.enabled": True,
        "tune.steps": 6,
        "tune.batch_pairs": 2,
        "tune.save_every": 2,
    }
    return C.replace(C.base_config(), **(base | changes))


def _hooks():
    _, embedder = loaders()
    load = lambda spec, **kw: worded(plm.load_generator(spec, **kw))
    return runner.Hooks(load_generator=load, load_embedder=embedder)


def _metrics(res):
    return [json.loads(x) for x in (res.release / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One tuned run, with what the trainer and the tuning stage were handed."""
    seen = {"rows": [], "margins": []}
    mp = pytest.MonkeyPatch()
    real_train, real_before = tuning.trainer.train, tuning.before_round

    def train(gen, rows, tc, **kw):
        seen["rows"].append(
            [gen.tokenizer.decode(r[m].tolist()) for r, m in zip(rows.tokens, rows.mask)]
        )
        seen["targets"] = [
            gen.tokenizer.decode(r[m].tolist()) for r, m in zip(rows.tokens, rows.target)
        ]
        return real_train(gen, rows, tc, **kw)

    def before(inputs, state, t, k, margin):
        seen["margins"].append((t, np.array(margin)))
        return real_before(inputs, state, t, k, margin)

    mp.setattr(tuning.trainer, "train", train)
    mp.setattr(tuning, "before_round", before)
    try:
        work = tmp_path_factory.mktemp("tuned")
        res = runner.run(_config(), work, hooks=_hooks())
    finally:
        mp.undo()
    return res, work, seen


@pytest.mark.slow
def test_training_reads_only_synthetic_text_and_post_noise_margins(tuned):
    res, work, seen = tuned
    rows = data_io.read_jsonl(res.release / "synthetic.jsonl")
    texts = [r["text"] for r in rows]
    private = [r["text"] for r in data_io.read_jsonl(first_private(24))]
    assert seen["rows"] and seen["margins"]
    # every completion trained on is (the start of) a synthetic text; no private text appears
    for target in seen["targets"]:
        assert any(t.startswith(target) for t in texts), target
    for row in (r for rs in seen["rows"] for r in rs):
        assert not any(p[:40] in row for p in private)
    # the margins are recomputed from what the checkpoint holds: the noisy prototypes (the
    # release), the public subspace and the synthetic embeddings
    ckpt = work / "private" / "checkpoint"
    protos = np.load(ckpt / f"{KIND}.npy")
    space = np.load(ckpt / "prototype_space.npy")
    emb = np.load(ckpt / "syn_emb.npy")
    labels = np.array([r["label"] for r in rows])
    assert [t for t, _ in seen["margins"]] == [1, 2]
    for _, margin in seen["margins"]:
        n = len(margin)
        want = prototypes.margins(prototypes.project(emb[:n], space), labels[:n], protos)
        np.testing.assert_allclose(margin, want, rtol=1e-6, atol=1e-9)


@pytest.mark.slow
def test_tuning_spends_no_privacy_and_is_recorded(tuned, tmp_path):
    res, _, _ = tuned
    plain = runner.run(_config(**{"tune.enabled": False}), tmp_path / "plain", hooks=_hooks())
    a = json.loads((res.release / "privacy.json").read_text())
    b = json.loads((plain.release / "privacy.json").read_text())
    assert a["epsilon_spent"] == b["epsilon_spent"] and a["sigma"] == b["sigma"]
    assert [r["what"] for r in a["releases"]] == [r["what"] for r in b["releases"]] == [[KIND]]
    metrics = _metrics(res)
    for row in metrics[1:]:
        rec = row["tuning"]["tiny-llama"]
        assert rec["source_round"] == row["round"] - 1
        assert rec["pairs"] == sum(rec["pairs_per_class"]) > 0
        assert rec["steps"] == 6 and len(rec["loss"]) == 6
        assert rec["loss"][0] == pytest.approx(np.log(2.0), rel=1e-4)  # starts at the reference
        assert rec["peak_rss_mb"] > 0 and rec["seconds"] > 0
    assert "tuning" not in metrics[0] and all("tuning" not in m for m in _metrics(plain))
    sheet = (res.release / "datasheet.md").read_text()
    assert "tuned on DP feedback" in sheet
    assert "tuned on DP feedback" not in (plain.release / "datasheet.md").read_text()


@pytest.mark.slow
def test_a_run_killed_during_tuning_resumes_to_the_same_outputs(tmp_path, monkeypatch):
    # seeded noise (NOT DP) so that two workdirs can be compared byte for byte
    seeded = {"privacy.noise": "seeded"}
    res = runner.run(_config(**seeded), tmp_path / "whole", hooks=_hooks())

    class Killed(RuntimeError):
        pass

    def kill_in_round_2(inputs, t, k):
        def progress(step, steps, loss):
            if t == 2 and step == 3:
                raise Killed("killed while tuning")

        return progress

    monkeypatch.setattr(tuning, "_progress", kill_in_round_2)
    work = tmp_path / "killed"
    with pytest.raises(Killed):
        runner.run(_config(**seeded), work, hooks=_hooks())
    saves = list((work / "private" / "checkpoint" / "tune" / "r2_k0").glob("step_*"))
    assert [p.name for p in saves] == ["step_000002"]
    monkeypatch.undo()
    again = runner.run(_config(**seeded), work, hooks=_hooks(), force=False)
    for name in ("synthetic.jsonl",):
        assert (again.release / name).read_bytes() == (res.release / name).read_bytes()
    strip = lambda m: [{k: v for k, v in r.items() if k != "stage_seconds"} for r in m]
    for a, b in zip(strip(_metrics(again)), strip(_metrics(res))):
        for rec in [*(a.get("tuning") or {}).values(), *(b.get("tuning") or {}).values()]:
            rec.pop("seconds"), rec.pop("peak_rss_mb")  # measurements of the process
        assert a == b


def test_only_the_prototype_method_tunes():
    with pytest.raises(ConfigError, match="tune.enabled"):
        methods.resolve(_config(method="wasp"))
    with pytest.raises(ConfigError, match="tune.targets"):
        _config(**{"tune.targets": ("wq", "lm_head")})
    with pytest.raises(ConfigError, match="tune.beta"):
        _config(**{"tune.beta": float("inf")})
