"""Per-class top-S selection: raw-count ranking, padding, small classes, compat sign flip."""

import chex
import jax.numpy as jnp
import numpy as np
from wasp_jax.kernels import selection

STATIC = ("num_classes", "s", "compat")


def _numpy_top_s(hist, label, mask, c, s):
    rows = np.flatnonzero((label == c) & mask)
    return rows[np.argsort(-hist[rows], kind="stable")[:s]]


class SelectionTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_raw_ranking_per_class_matches_numpy(self):
        top = self.variant(selection.top_s_per_class, static_argnames=STATIC)
        rng = np.random.default_rng(0)
        for seed in range(3):
            n = 200
            hist = rng.normal(0, 5, n).astype(np.float32)
            label = rng.integers(0, 3, n).astype(np.int32)
            mask = rng.random(n) > 0.1
            idx, valid = top(hist, label, mask, num_classes=3, s=8)
            chex.assert_shape([idx, valid], (3, 8))
            assert bool(valid.all()), seed
            for c in range(3):
                np.testing.assert_array_equal(idx[c], _numpy_top_s(hist, label, mask, c, 8))

    @chex.variants(with_jit=True, without_jit=True)
    def test_small_class_and_padding_marked_invalid(self):
        top = self.variant(selection.top_s_per_class, static_argnames=STATIC)
        hist = jnp.array([5.0, 4.0, 100.0, 3.0, 2.0, 1.0])
        label = jnp.array([0, 0, 0, 1, 1, 1])
        mask = jnp.array([True, True, False, True, True, True])
        idx, valid = top(hist, label, mask, num_classes=2, s=3)
        np.testing.assert_array_equal(valid, [[True, True, False], [True, True, True]])
        np.testing.assert_array_equal(idx[0, :2], [0, 1])
        np.testing.assert_array_equal(idx[1], [3, 4, 5])

    @chex.variants(with_jit=True, without_jit=True)
    def test_compat_reproduces_sign_flip(self):
        top = self.variant(selection.top_s_per_class, static_argnames=STATIC)
        # Class 0 has a negative noisy sum: compat returns its most negative entries.
        hist = jnp.array([1.0, -2.0, -5.0, -3.0, 4.0, 2.0, 1.0, 3.0])
        label = jnp.array([0, 0, 0, 0, 1, 1, 1, 1])
        raw, _ = top(hist, label, num_classes=2, s=2)
        compat, valid = top(hist, label, num_classes=2, s=2, compat=True)
        np.testing.assert_array_equal(raw, [[0, 1], [4, 7]])
        np.testing.assert_array_equal(compat, [[2, 3], [4, 7]])
        assert bool(valid.all())

    @chex.variants(with_jit=True, without_jit=True)
    def test_compat_equals_raw_when_class_sums_positive(self):
        top = self.variant(selection.top_s_per_class, static_argnames=STATIC)
        rng = np.random.default_rng(1)
        hist = rng.uniform(0.5, 10.0, 300).astype(np.float32)
        label = rng.integers(0, 2, 300).astype(np.int32)
        raw, _ = top(hist, label, num_classes=2, s=8)
        compat, _ = top(hist, label, num_classes=2, s=8, compat=True)
        np.testing.assert_array_equal(raw, compat)

    @chex.variants(with_jit=True, without_jit=True)
    def test_select_contrastive_uses_nearest_for_good_farthest_for_bad(self):
        sel_fn = self.variant(selection.select_contrastive, static_argnames=STATIC)
        near = jnp.array([0.0, 9.0, 1.0, 8.0])
        far = jnp.array([7.0, 0.0, 6.0, 1.0])
        sel = sel_fn(near, far, jnp.array([0, 0, 1, 1]), num_classes=2, s=1)
        np.testing.assert_array_equal(sel.good_idx[:, 0], [1, 3])
        np.testing.assert_array_equal(sel.bad_idx[:, 0], [0, 2])
        assert bool(sel.good_valid.all()) and bool(sel.bad_valid.all())


class DisjointTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_good_and_bad_never_share_a_sample(self):
        pick = self.variant(selection.select_contrastive, static_argnames=STATIC)
        rng = np.random.default_rng(1)
        for n_class in (4, 5, 8, 12, 30):  # below, at and above 2s = 16 rows per class
            n = 2 * n_class
            label = np.repeat(np.arange(2), n_class).astype(np.int32)
            near = rng.normal(0, 3, n).astype(np.float32)
            far = near.copy()  # the same ranking on both: the worst case for overlap
            sel = pick(near, far, label, np.ones(n, bool), num_classes=2, s=8)
            for c in range(2):
                good = set(np.asarray(sel.good_idx[c])[np.asarray(sel.good_valid[c])].tolist())
                bad = set(np.asarray(sel.bad_idx[c])[np.asarray(sel.bad_valid[c])].tolist())
                assert not good & bad, (n_class, good & bad)
                assert len(good) == min(8, n_class)
                assert len(bad) == min(8, max(n_class - 8, 0))
                rows = np.flatnonzero(label == c)
                rest = np.setdiff1d(rows, sorted(good))
                want = rest[np.argsort(-far[rest], kind="stable")[: len(bad)]]
                chex.assert_trees_all_equal(sorted(bad), sorted(want.tolist()))
