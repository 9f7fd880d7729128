"""Preference pairs from post-noise scores, and the trainer: which pairs each step reads, a
kill during training resumed to the same bytes, and 8 devices agreeing with one."""

import chex
import jax
import numpy as np
import pytest

from wasp_jax.config.tune import TuneConfig
from wasp_jax.models import generator as plm
from wasp_jax.models import sharding as shd
from wasp_jax.tune import dpo, trainer
from wasp_jax.tune.pairs import preference_pairs


def test_pairs_best_against_worst_inside_each_class_and_group():
    scores = np.array([0.9, 0.1, 0.5, 0.45, 0.8, -0.3, 0.0, 0.7])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    groups = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    got = preference_pairs(scores, labels, groups, min_gap=0.1)
    pairs = sorted(zip(got.chosen.tolist(), got.rejected.tolist()))
    # class 0: 0 v 1 (gap .8); 2 v 3 (gap .05) dropped; class 1: group 0: 4 v 5, group 1: 7 v 6
    assert pairs == [(0, 1), (4, 5), (7, 6)]
    assert got.per_class(2) == [1, 2]
    assert np.all(scores[got.chosen] - scores[got.rejected] >= 0.1)
    assert np.all(labels[got.chosen] == labels[got.rejected])
    assert np.all(groups[got.chosen] == groups[got.rejected])


def test_pairs_are_disjoint_capped_and_refuse_bad_input():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=40), rng.integers(0, 3, 40)
    got = preference_pairs(scores, labels, np.zeros(40, int), min_gap=0.0, max_per_class=2)
    used = np.concatenate([got.chosen, got.rejected])
    assert len(set(used.tolist())) == len(used)
    assert max(got.per_class(3)) <= 2
    capped = preference_pairs(scores, labels, np.zeros(40, int), min_gap=0.0)
    for c in range(3):  # the cap keeps each class's widest gaps
        kept = np.sort(got.gap[got.label == c])
        assert np.all(kept >= np.sort(capped.gap[capped.label == c])[-len(kept) :] - 1e-12)
    with pytest.raises(ValueError, match="min_gap"):
        preference_pairs(scores, labels, labels, min_gap=-1.0)
    with pytest.raises(ValueError, match="finite"):
        preference_pairs([np.nan, 1.0], [0, 0], [0, 0], min_gap=0.0)
    assert len(preference_pairs([1.0, 1.0], [0, 0], [0, 0], min_gap=0.0)) == 0  # no gap, no pair


def test_batch_indices_cover_each_epoch_once_and_depend_only_on_the_step():
    n, b = 7, 3
    seen = np.concatenate([trainer.batch_indices(n, b, s, seed=4) for s in range(7)])
    for e in range(3):  # 21 positions = 3 epochs, each a permutation of the 7 pairs
        assert sorted(seen[e * n : (e + 1) * n].tolist()) == list(range(n))
    chex.assert_trees_all_equal(trainer.batch_indices(n, b, 5, 4), seen[15:18])


@pytest.fixture(scope="module")
def rows():
    gen = plm.load_generator("tiny-llama")
    rng = np.random.default_rng(0)
    prompts = [gen.encode_prompt(f"class {i % 2}: ") for i in range(12)]
    comps = [list(rng.integers(3, 250, size=int(rng.integers(3, 8)))) for _ in range(12)]
    return dpo.token_rows(prompts, comps)


TC = TuneConfig(enabled=True, steps=9, batch_pairs=4, learning_rate=5e-3, save_every=3)


class Killed(RuntimeError):
    pass


def _kill_at(step):
    def progress(done, total, loss):
        if done == step:
            raise Killed(f"killed after step {done}")

    return progress


@pytest.mark.slow
def test_a_kill_during_training_resumes_to_the_same_bytes(rows, tmp_path):
    gen = plm.load_generator("tiny-llama")
    whole = trainer.train(gen, rows, TC, seed=1, ckpt_dir=tmp_path / "whole")
    assert whole.loss[0] == pytest.approx(np.log(2.0), rel=1e-5)
    assert whole.loss[-1] < whole.loss[0]  # it learns the pairs
    with pytest.raises(Killed):
        trainer.train(gen, rows, TC, seed=1, ckpt_dir=tmp_path / "cut", progress=_kill_at(5))
    saves = sorted(p.name for p in (tmp_path / "cut").glob("step_*"))
    assert saves == ["step_000003"]  # the last save before the kill
    again = trainer.train(gen, rows, TC, seed=1, ckpt_dir=tmp_path / "cut")
    assert again.resumed_from == 3
    chex.assert_trees_all_equal(again.adapters, whole.adapters)
    chex.assert_trees_all_equal(again.loss, whole.loss)
    a = (tmp_path / "whole" / trainer.ADAPTERS).read_bytes()
    assert a == (tmp_path / "cut" / trainer.ADAPTERS).read_bytes()
    chex.assert_trees_all_equal(trainer.saved_adapters(tmp_path / "cut"), whole.adapters)
    done = trainer.train(gen, rows, TC, seed=1, ckpt_dir=tmp_path / "cut")
    assert done.resumed_from == TC.steps  # a finished training is read back, not rerun


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(8, 1), (4, 2)])
def test_eight_devices_train_like_one(rows, shape):
    """The batch split over a data axis of 8 (or 4 x 2 with the weights split over the model
    axis) gives the adapters one device gives, up to float32 summation order."""
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 (fake) devices")
    one = trainer.train(
        plm.load_generator("tiny-llama", mesh=shd.single_device_mesh()), rows, TC, seed=2
    )
    mesh = shd.make_mesh(*shape, devices=jax.devices()[:8])
    gen8 = plm.load_generator("tiny-llama", mesh=mesh)
    eight = trainer.train(gen8, rows, TC, seed=2)
    chex.assert_trees_all_close(eight.loss, one.loss, atol=1e-4, rtol=1e-4)
    chex.assert_trees_all_close(eight.adapters, one.adapters, atol=2e-4, rtol=2e-3)
    assert any(float(np.abs(a["b"]).max()) > 1e-3 for a in one.adapters.values())
