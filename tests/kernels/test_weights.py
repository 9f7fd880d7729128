"""PLM scores (compat and robust), softmax shares, largest-remainder allocation."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from wasp_jax.kernels import weights

from wasp_jax.budget import allocate_budget

STATIC = ("num_plms", "compat")


def _case(seed, n=120, num_plms=3):
    rng = np.random.default_rng(seed)
    hist = rng.normal(1.0, 3.0, n).astype(np.float32)
    plm = rng.integers(0, num_plms, n).astype(np.int32)
    mask = rng.random(n) > 0.15
    return hist, plm, mask


class WeightsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_compat_formula_matches_numpy(self):
        scores = self.variant(weights.plm_scores, static_argnames=STATIC)
        hist, plm, mask = _case(0)
        h = np.where(mask, hist.astype(np.float64) + 1e-15, 0.0)
        v = h / h.sum()
        n_k = np.bincount(plm[mask], minlength=3)
        want = np.bincount(plm, weights=v, minlength=3) * mask.sum() / n_k
        got = scores(hist, plm, mask, num_plms=3, compat=True)
        np.testing.assert_allclose(got, want, rtol=1e-4)
        np.testing.assert_allclose((n_k / mask.sum() * np.asarray(got)).sum(), 1.0, rtol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_robust_is_mean_positive_votes_over_overall_mean(self):
        scores = self.variant(weights.plm_scores, static_argnames=STATIC)
        hist, plm, mask = _case(1)
        pos = np.where(mask, np.maximum(hist, 0.0), 0.0)
        n_k = np.bincount(plm[mask], minlength=3)
        want = (np.bincount(plm, weights=pos, minlength=3) / n_k) / (pos.sum() / mask.sum())
        got = scores(hist, plm, mask, num_plms=3)
        np.testing.assert_allclose(got, want, rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_padding_neutral_and_empty_plm_scores_zero(self):
        scores = self.variant(weights.plm_scores, static_argnames=STATIC)
        hist, plm, _ = _case(2, n=60)
        base = scores(hist, plm, num_plms=4)
        padded = scores(
            np.concatenate([hist, np.full(20, 50.0, np.float32)]),
            np.concatenate([plm, np.zeros(20, np.int32)]),
            np.arange(80) < 60,
            num_plms=4,
        )
        np.testing.assert_allclose(padded, base, rtol=1e-6)
        assert float(base[3]) == 0.0
        all_neg = scores(-jnp.ones(6), jnp.array([0, 0, 1, 1, 2, 2]), num_plms=3)
        np.testing.assert_array_equal(all_neg, [1.0, 1.0, 1.0])

    @chex.variants(with_jit=True, without_jit=True)
    def test_shares_are_softmax_over_tau(self):
        shares = self.variant(weights.plm_shares)
        s = jnp.array([1.0, 2.0, 0.5])
        got = shares(s, tau=0.5)
        want = np.exp(np.array([2.0, 4.0, 1.0]))
        np.testing.assert_allclose(got, want / want.sum(), rtol=1e-6)
        np.testing.assert_allclose(shares(jnp.ones(4)), 0.25, rtol=1e-6)


def test_allocation_largest_remainder():
    np.testing.assert_array_equal(allocate_budget([0.5, 0.3, 0.2], 7), [4, 2, 1])
    np.testing.assert_array_equal(allocate_budget([1 / 3] * 3, 1200), [400, 400, 400])
    np.testing.assert_array_equal(allocate_budget([0.25, 0.25, 0.25, 0.25], 6), [2, 2, 1, 1])
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.dirichlet(np.ones(6))
        total = int(rng.integers(0, 5000))
        a = np.asarray(allocate_budget(p, total))
        assert a.sum() == total and a.min() >= 0
        assert np.all(np.abs(a - p * total) < 1.0)


@pytest.mark.parametrize(
    "shares,total,match",
    [
        ([0.5, -0.1], 3, "shares"),
        ([], 3, "shares"),
        ([0.0, 0.0], 3, "positive sum"),
        ([0.5, 0.5], -1, "total"),
        ([0.5, 0.5], 2.5, "total"),
    ],
)
def test_allocation_validation(shares, total, match):
    with pytest.raises(ValueError, match=match):
        allocate_budget(shares, total)
