"""Approximate candidate search with exact re-ranking, against the exact search."""

import chex
import jax
import numpy as np
import pytest
from wasp_jax.kernels import approx_top_q_candidates, voting

from tests.kernels._reference import unit_rows


def _case(seed=0, n_priv=12, n_syn=300, classes=3, d=16):
    rng = np.random.default_rng(seed)
    return (
        unit_rows(rng, n_priv, d),
        rng.integers(0, classes, n_priv).astype(np.int32),
        unit_rows(rng, n_syn, d),
        rng.integers(0, classes, n_syn).astype(np.int32),
        rng.random(n_syn) > 0.1,
    )


class ApproxSearchTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @pytest.mark.slow
    def test_recall_and_exact_values(self):
        priv, plab, syn, slab, smask = _case()
        fn = self.variant(approx_top_q_candidates, static_argnames=("q", "recall_target"))
        got = fn(priv, plab, syn, slab, q=5, syn_mask=smask, recall_target=0.9)
        want = voting.top_q_candidates(priv, plab, syn, slab, q=5, syn_mask=smask)
        sim = priv @ syn.T
        for sign, (gv, gi), (_, wi) in zip((1.0, -1.0), got, want):
            gv, gi, wi = map(np.asarray, (gv, gi, wi))
            chex.assert_shape(gi, (12, 5))
            # Every proposed vote is a valid same-class row with its exact similarity.
            assert np.all(slab[gi] == plab[:, None]) and np.all(smask[gi])
            rows = np.arange(12)[:, None]
            chex.assert_trees_all_close(gv, sign * sim[rows, gi], atol=1e-5)
            assert np.all(np.diff(gv, axis=1) <= 1e-6)  # best first
            recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(gi, wi)])
            # On CPU approx_max_k is exact; on TPU the target holds per entry.
            expected = 1.0 if jax.default_backend() == "cpu" else 0.9
            assert recall >= expected - 0.05, recall
