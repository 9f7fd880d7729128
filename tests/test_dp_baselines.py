"""The DP baselines: DP-SGD accounting and clipping, the DP nearest-centroid classifier."""

import chex
import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant

from tests.kernels._reference import unit_rows
from wasp_jax.pipeline import vote_baselines as vb
from wasp_jax.privacy import calibrate_sigma
from wasp_jax.privacy.dpsgd import dpsgd_epsilon, dpsgd_noise_multiplier


def _rdp_epsilon(z, rate, steps, delta=1e-5):
    step = dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(z))
    event = dp_accounting.SelfComposedDpEvent(step, steps)
    return rdp_privacy_accountant.RdpAccountant().compose(event).get_epsilon(delta)


@pytest.mark.parametrize("rate,steps", [(1.0, 10), (0.5, 30)])
def test_dpsgd_noise_multiplier_is_within_budget_and_tight(rate, steps):
    z = dpsgd_noise_multiplier(4.0, 1e-5, sampling_rate=rate, steps=steps)
    assert _rdp_epsilon(z, rate, steps) <= 4.0
    assert _rdp_epsilon(z * 0.99, rate, steps) > 4.0 * 0.98  # not grossly over-noised
    assert dpsgd_epsilon(z, 1e-5, sampling_rate=rate, steps=steps) == pytest.approx(
        _rdp_epsilon(z, rate, steps)
    )
    with pytest.raises(ValueError, match="sampling_rate"):
        dpsgd_noise_multiplier(4.0, 1e-5, sampling_rate=0.0, steps=10)


def test_clipped_gradient_sum_moves_by_at_most_clip_per_record():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((20, 5)) * 3, jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 20), jnp.int32)
    params = (jnp.asarray(rng.standard_normal((5, 3)), jnp.float32), jnp.zeros(3))
    full = jnp.ones(20)
    fn = jax.jit(vb.clipped_grad_sum)
    base = fn(params, x, y, full, 0.7, 1e-3)
    worst = 0.0
    for i in range(20):
        out = fn(params, x, y, full.at[i].set(0.0), 0.7, 1e-3)
        diff = jnp.concatenate([(a - b).ravel() for a, b in zip(out, base)])
        worst = max(worst, float(jnp.linalg.norm(diff)))
    assert worst <= 0.7 + 1e-5
    assert worst == pytest.approx(0.7, abs=1e-4)  # large raw gradients: every one is clipped
    eager = vb.clipped_grad_sum(params, x, y, full, 0.7, 1e-3)
    chex.assert_trees_all_close(eager, base, atol=1e-5)


def test_dp_sgd_probe_learns_separable_data_and_reports_its_accounting():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    x = unit_rows(rng, 400, 8) + np.where(y[:, None] == 1, 1.0, -1.0) * np.eye(8)[0]
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    k, b, info = vb.dp_sgd_probe(jax.random.key(0), x, y, num_classes=2, epsilon=8.0,
                                 delta=1e-5, steps=30, sampling_rate=0.5)  # fmt: skip
    assert ((x @ k + b).argmax(1) == y).mean() > 0.9
    assert info["epsilon"] <= 8.0 and info["noise_multiplier"] > 0


def test_dp_centroid_classifier_sigma_and_prediction():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    x = unit_rows(rng, 300, 6) * 0.3 + np.eye(6)[y]
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    sums, sigma = vb.dp_centroid_classifier(jax.random.key(0), x, y, num_classes=3,
                                            epsilon=4.0, delta=1e-5)  # fmt: skip
    assert sigma == pytest.approx(calibrate_sigma(4.0, 1e-5, num_rounds=1, l2_sensitivity=1.0))
    clean = np.stack([x[y == c].sum(0) for c in range(3)])
    assert not np.allclose(sums, clean)
    assert np.abs(sums - clean).std() == pytest.approx(sigma, rel=0.5)
    assert (vb.centroid_predict(sums, x) == y).mean() > 0.9
