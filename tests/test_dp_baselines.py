"""The DP baselines: grid rounding keeps the sensitivity, accounting, adjacency, learning.

The references are independent of the code under test: leave-one-out and replace-one brute
force for the sensitivities, hand-written softmax gradients in NumPy, recorded sigmas checked
against a plain-Python RDP accountant, and the sums of the raw embeddings.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.kernels._reference import unit_rows
from wasp_jax.pipeline.stages import vote_baselines as vb
from wasp_jax.privacy.noise_source import NoiseSource

# Recorded from the RDP calibration (add/remove, sensitivity 1, delta 1e-5); each is checked
# below against `_rdp_epsilon`, a reference that does not use the project's accounting.
SIGMA_EPS8_T30 = 3.4926667342197812
SIGMA_EPS4_T1 = 1.1575697970168346
SENSITIVITY = {"add_remove": 1.0, "replace_one": 2.0}  # of a sum of norm-<=1 records


def _rdp_epsilon(sigma, rounds, delta, sensitivity=1.0):
    """Epsilon at delta of `rounds` Gaussian releases: RDP(alpha) = T alpha S^2 / (2 sigma^2),
    converted with Balle et al. (2020), minimised over alpha in (1, 200] by a fine grid."""
    best = math.inf
    for i in range(1, 20_000):
        a = 1.0 + i / 100
        rdp = rounds * a * sensitivity**2 / (2 * sigma**2)
        best = min(best, rdp + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1))
    return best


def test_the_recorded_sigmas_meet_their_epsilon_by_an_independent_accountant():
    assert _rdp_epsilon(SIGMA_EPS8_T30, 30, 1e-5) == pytest.approx(8.0, abs=0.01)
    assert _rdp_epsilon(0.97 * SIGMA_EPS8_T30, 30, 1e-5) > 8.1
    assert _rdp_epsilon(SIGMA_EPS4_T1, 1, 1e-5) == pytest.approx(4.0, abs=0.01)
    assert _rdp_epsilon(0.97 * SIGMA_EPS4_T1, 1, 1e-5) > 4.1


def _clipped_grad_sum(params, x, y, clip):
    """Sum of per-record softmax cross-entropy gradients (kernel row-major, then bias), each
    clipped to L2 norm `clip`: written out by hand, one record at a time, in float64."""
    kernel, bias = (np.asarray(p, np.float64) for p in params)
    total = 0.0
    for xi, yi in zip(np.asarray(x, np.float64), np.asarray(y), strict=True):
        logits = xi @ kernel + bias
        p = np.exp(logits - logits.max())
        p /= p.sum()
        err = p - np.eye(len(bias))[yi]
        g = np.concatenate([np.outer(xi, err).ravel(), err])
        total = total + g * min(1.0, clip / np.linalg.norm(g))
    return total


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
    # against the hand-written gradients: each record is off by at most its rounding and the
    # clip radius' margin, step sqrt(D) in all (D = 18 coordinates)
    fine = 2.0**-12
    got = np.asarray(fn(params, x, y, 0.7, step=fine), np.float64) * fine
    want = _clipped_grad_sum(params, x, y, 0.7)
    assert np.linalg.norm(got - want) <= 20 * fine * math.sqrt(18)


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
    assert info["sigma"] == pytest.approx(SIGMA_EPS8_T30) and info["accounting"] == "rdp"
    _, _, rep = vb.dp_sgd_probe(
        NoiseSource.fresh(),
        x,
        y,
        num_classes=2,
        epsilon=8.0,
        delta=1e-5,
        steps=30,
        adjacency="replace_one",
    )
    # replace-one: the 30 releases must meet epsilon 8 at sensitivity 2
    assert _rdp_epsilon(rep["sigma"], 30, 1e-5, sensitivity=2.0) == pytest.approx(8.0, abs=0.01)


def test_dp_centroid_classifier_sigma_adjacency_and_prediction():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    x = unit_rows(rng, 300, 6) * 0.3 + np.eye(6)[y]
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    src = NoiseSource.seeded(0)  # fixed draws: the statistical asserts are deterministic
    sums, sigma = vb.dp_centroid_classifier(src, x, y, num_classes=3, epsilon=4.0, delta=1e-5)
    assert sigma == pytest.approx(SIGMA_EPS4_T1)
    clean, _ = vb.dp_centroid_classifier(src, x, y, num_classes=3, epsilon=np.inf, delta=1e-5)
    assert np.abs(clean - np.stack([x[y == c].sum(0) for c in range(3)])).max() < 0.2
    assert (sums - clean).std() == pytest.approx(sigma, rel=0.5)
    assert (vb.centroid_predict(sums, x) == y).mean() > 0.9
    _, rep = vb.dp_centroid_classifier(
        src, x, y, num_classes=3, epsilon=4.0, delta=1e-5, adjacency="replace_one"
    )
    assert _rdp_epsilon(rep, 1, 1e-5, sensitivity=2.0) == pytest.approx(4.0, abs=0.01)
    with pytest.raises(ValueError, match="adjacency"):
        vb.dp_centroid_classifier(
            src, x, y, num_classes=3, epsilon=4.0, delta=1e-5, adjacency="bogus"
        )


def test_the_baselines_sensitivity_covers_their_adjacency_by_brute_force():
    """Each baseline is calibrated for 1 (add/remove) or 2 (replace-one) times its per-record
    bound; every neighbour of either kind, a record moved across classes or replaced by its
    opposite, stays within it, and replace-one reaches well beyond the add/remove bound (so a
    baseline calibrated for add/remove under replace-one would be wrong)."""
    rng = np.random.default_rng(4)
    x = unit_rows(rng, 30, 6).astype(np.float32)
    y = rng.integers(0, 3, 30).astype(np.int32)
    step = 2.0**-10
    sums = jax.jit(vb._noisy_sums, static_argnames=("num_classes", "step"))
    zero = np.zeros((3, 6), np.int32)
    base = np.asarray(sums(zero, x, y, num_classes=3, step=step), np.float64)
    worst = {"add_remove": 0.0, "replace_one": 0.0}
    for i in range(30):
        keep = np.arange(30) != i
        out = np.asarray(sums(zero, x[keep], y[keep], num_classes=3, step=step), np.float64)
        worst["add_remove"] = max(worst["add_remove"], np.linalg.norm(base - out))
        for x_new, y_new in ((-x[i], y[i]), (x[i], (y[i] + 1) % 3)):
            x2, y2 = x.copy(), y.copy()
            x2[i], y2[i] = x_new, y_new
            out = np.asarray(sums(zero, x2, y2, num_classes=3, step=step), np.float64)
            worst["replace_one"] = max(worst["replace_one"], np.linalg.norm(base - out))
    for adjacency, bound in worst.items():
        assert bound <= SENSITIVITY[adjacency] + 1e-9, adjacency
    assert worst["replace_one"] > 1.9 and worst["add_remove"] > 0.99
    # the DP-SGD gradient sum, the same way: clip per record, 2 clip under replace-one
    params = (jnp.asarray(rng.standard_normal((6, 3)), jnp.float32), jnp.zeros(3))
    grads = jax.jit(vb.clipped_grad_units, static_argnames=("step",))
    g0 = np.asarray(grads(params, x * 4, y, 0.5, step=2.0**-8), np.float64)
    moved = 0.0
    for i in range(30):
        x2, y2 = x.copy() * 4, y.copy()
        y2[i] = (y[i] + 1) % 3
        g = np.asarray(grads(params, x2, y2, 0.5, step=2.0**-8), np.float64)
        moved = max(moved, float(np.linalg.norm((g0 - g) * 2.0**-8)))
    assert 0.5 < moved <= 2 * 0.5 + 1e-6


def test_the_centroid_release_depends_on_the_sums_only_not_the_count():
    """The release is a noisy sum: a record with a zero embedding changes the number of private
    records but not the sums, and leaves the release (same noise) unchanged; a record added
    twice moves its class's sum by the same amount again, close to its embedding."""
    rng = np.random.default_rng(5)
    x = unit_rows(rng, 10, 4).astype(np.float32)
    y = rng.integers(0, 2, 10)
    run = lambda xs, ys, eps: vb.dp_centroid_classifier(
        NoiseSource.seeded(0), xs, ys, num_classes=2, epsilon=eps, delta=1e-5
    )[0]
    more_x, more_y = np.concatenate([x, np.zeros((3, 4), np.float32)]), np.r_[y, [0, 1, 1]]
    chex.assert_trees_all_equal(run(x, y, 4.0), run(more_x, more_y, 4.0))
    one = run(x, y, np.inf)
    two = run(np.concatenate([x, x[:1]]), np.r_[y, y[:1]], np.inf)
    three = run(np.concatenate([x, x[:1], x[:1]]), np.r_[y, y[:1], y[:1]], np.inf)
    chex.assert_trees_all_equal(three - two, two - one)  # exact: integer grid units
    moved = (two - one)[y[0]]
    # a unit-norm row lands within the grid's margin (1 step) plus rounding (half a step)
    chex.assert_trees_all_close(moved, x[0], atol=1.5 * vb.GRID)
    assert np.abs(np.delete(two - one, y[0], axis=0)).max() == 0
