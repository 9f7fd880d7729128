"""The DP baselines: grid rounding keeps the sensitivity, accounting, adjacency, learning."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.kernels._reference import unit_rows
from wasp_jax.pipeline import vote_baselines as vb
from wasp_jax.privacy import calibrate_sigma
from wasp_jax.privacy.noise_source import NoiseSource


def test_clipped_gradient_units_move_by_at_most_clip_per_record():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((20, 5)) * 3, jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 20), jnp.int32)
    params = (jnp.asarray(rng.standard_normal((5, 3)), jnp.float32), jnp.zeros(3))
    step = 2.0**-6
    fn = jax.jit(vb.clipped_grad_units, static_argnames=("step",))
    base = np.asarray(fn(params, x, y, 0.7, step=step))
    assert base.dtype == np.int32
    worst = 0.0
    for i in range(20):
        keep = np.arange(20) != i
        out = np.asarray(fn(params, x[keep], y[keep], 0.7, step=step))
        worst = max(worst, float(np.linalg.norm((base - out) * step)))
    assert worst <= 0.7 + 1e-6
    assert worst > 0.7 - 18 * step  # large raw gradients: every one is clipped, then rounded
    eager = vb.clipped_grad_units(params, x, y, 0.7, step)
    chex.assert_trees_all_equal(np.asarray(eager), base)


def test_rounded_embeddings_keep_norm_one_so_the_sums_keep_sensitivity_one():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((200, 384)) * 5, jnp.float32)
    for step in (2.0**-6, 2.0**-10):
        units = np.asarray(vb._grid_units(x, step), np.float64)
        assert np.linalg.norm(units * step, axis=1).max() <= 1.0


def test_dp_sgd_probe_learns_separable_data_and_reports_its_accounting():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    x = unit_rows(rng, 400, 8) + np.where(y[:, None] == 1, 1.0, -1.0) * np.eye(8)[0]
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    k, b, info = vb.dp_sgd_probe(
        NoiseSource.seeded(1), x, y, num_classes=2, epsilon=8.0, delta=1e-5, steps=30
    )
    assert ((x @ k + b).argmax(1) == y).mean() > 0.9
    want = calibrate_sigma(8.0, 1e-5, num_rounds=30, l2_sensitivity=1.0, method="rdp")
    assert info["sigma"] == pytest.approx(want) and info["accounting"] == "rdp"
    _, _, rep = vb.dp_sgd_probe(
        NoiseSource.fresh(), x, y, num_classes=2, epsilon=8.0, delta=1e-5, steps=30,
        adjacency="replace_one",
    )  # fmt: skip
    assert rep["sigma"] == pytest.approx(2 * want)


def test_dp_centroid_classifier_sigma_adjacency_and_prediction():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    x = unit_rows(rng, 300, 6) * 0.3 + np.eye(6)[y]
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    src = NoiseSource.seeded(0)  # fixed draws: the statistical asserts are deterministic
    sums, sigma = vb.dp_centroid_classifier(src, x, y, num_classes=3, epsilon=4.0, delta=1e-5)
    want = calibrate_sigma(4.0, 1e-5, num_rounds=1, l2_sensitivity=1.0, method="rdp")
    assert sigma == pytest.approx(want)
    clean, _ = vb.dp_centroid_classifier(src, x, y, num_classes=3, epsilon=np.inf, delta=1e-5)
    assert np.abs(clean - np.stack([x[y == c].sum(0) for c in range(3)])).max() < 0.2
    assert (sums - clean).std() == pytest.approx(sigma, rel=0.5)
    assert (vb.centroid_predict(sums, x) == y).mean() > 0.9
    _, rep = vb.dp_centroid_classifier(
        src, x, y, num_classes=3, epsilon=4.0, delta=1e-5, adjacency="replace_one"
    )
    assert rep == pytest.approx(2 * want)
    with pytest.raises(ValueError, match="adjacency"):
        vb.dp_centroid_classifier(src, x, y, num_classes=3, epsilon=4.0, delta=1e-5,
                                  adjacency="bogus")  # fmt: skip
