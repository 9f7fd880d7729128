"""Top-Q vote kernel: brute-force oracle, q=1 arg-min, blocking, padding, parties, traces."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from wasp_jax.kernels import voting
from wasp_jax.kernels.padding import bucket_size, pad_rows

from tests.kernels._reference import reference_votes, unit_rows

STATIC = ("q", "block_size")


def _random_case(seed, n_priv, n_syn, num_classes, d=8, pad_frac=0.2):
    rng = np.random.default_rng(seed)
    return dict(
        priv_emb=unit_rows(rng, n_priv, d),
        priv_label=rng.integers(0, num_classes, n_priv).astype(np.int32),
        syn_emb=unit_rows(rng, n_syn, d),
        syn_label=rng.integers(0, num_classes, n_syn).astype(np.int32),
        priv_mask=rng.random(n_priv) >= pad_frac,
        syn_mask=rng.random(n_syn) >= pad_frac,
    )


class TopQVotesTest(chex.TestCase):
    """Eager (without_jit) variants compile every op separately, so only the small cases run
    both ways; the eager runs still go through every helper of the kernel."""

    @chex.variants(with_jit=True, without_jit=True)
    @pytest.mark.slow
    def test_geometric_votes_go_to_nearest_and_farthest(self):
        vote = self.variant(voting.top_q_votes, static_argnames=STATIC)
        syn = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
        near, far = vote(jnp.array([[1.0, 0.0]]), jnp.array([0]), syn, jnp.zeros(4, jnp.int32), q=2)
        chex.assert_trees_all_close(near, jnp.array([1.0, 0.5, 0.0, 0.0]))
        chex.assert_trees_all_close(far, jnp.array([0.0, 0.0, 0.5, 1.0]))

    @chex.variants(with_jit=True, without_jit=True)
    @pytest.mark.slow
    def test_matches_bruteforce_reference_blocked_and_unblocked(self):
        vote = self.variant(voting.top_q_votes, static_argnames=STATIC)
        case = _random_case(1, n_priv=24, n_syn=40, num_classes=3)
        want = reference_votes(**case, q=3)
        for block_size in (None, 7):
            got = vote(**case, q=3, block_size=block_size)
            np.testing.assert_allclose(got[0], want[0], atol=1e-5)
            np.testing.assert_allclose(got[1], want[1], atol=1e-5)

    @chex.variants(with_jit=True)
    def test_pool_smaller_than_q_gives_only_first_weights(self):
        vote = self.variant(voting.top_q_votes, static_argnames=STATIC)
        case = _random_case(5, n_priv=6, n_syn=3, num_classes=1, pad_frac=0.0)
        near, far = vote(**case, q=8)
        # 6 voters, each gives 1 + 1/2 + 1/4 to the 3 candidates of the only class.
        np.testing.assert_allclose(float(near.sum()), 6 * 1.75, rtol=1e-6)
        np.testing.assert_allclose(float(far.sum()), 6 * 1.75, rtol=1e-6)
        want = reference_votes(**case, q=8)
        np.testing.assert_allclose(near, want[0], atol=1e-5)

    @chex.variants(with_jit=True)
    def test_q1_equals_argmin_histogram(self):
        vote = self.variant(voting.top_q_votes, static_argnames=STATIC)
        case = _random_case(7, n_priv=50, n_syn=300, num_classes=1, pad_frac=0.0)
        near, far = vote(**case, q=1)
        d2 = ((case["priv_emb"][:, None] - case["syn_emb"][None]) ** 2).sum(-1)
        np.testing.assert_array_equal(near, np.bincount(d2.argmin(1), minlength=300))
        np.testing.assert_array_equal(far, np.bincount(d2.argmax(1), minlength=300))

    @chex.variants(with_jit=True)
    @pytest.mark.slow
    def test_blocked_equals_unblocked_on_grouped_path(self):
        vote = self.variant(voting.top_q_votes, static_argnames=STATIC)
        case = _random_case(11, n_priv=64, n_syn=3000, num_classes=3, d=16)
        full = vote(**case, q=8)
        for block_size in (1024, 1000, 5):
            blocked = vote(**case, q=8, block_size=block_size)
            np.testing.assert_array_equal(blocked[0], full[0])
            np.testing.assert_array_equal(blocked[1], full[1])
        want = reference_votes(**case, q=8)
        np.testing.assert_allclose(full[0], want[0], atol=1e-5)
        np.testing.assert_allclose(full[1], want[1], atol=1e-5)

    @chex.variants(with_jit=True)
    def test_padded_rows_neither_vote_nor_receive(self):
        vote = self.variant(voting.top_q_votes, static_argnames=STATIC)
        case = _random_case(13, n_priv=20, n_syn=70, num_classes=2, pad_frac=0.0)
        base = vote(**case, q=4)
        rng = np.random.default_rng(0)
        pe, pm = pad_rows(case["priv_emb"], 32)
        se, sm = pad_rows(case["syn_emb"], 96)
        # Padded rows get real-looking embeddings and labels: only the masks may exclude them.
        pe[20:] = unit_rows(rng, 12, 8)
        se[70:] = unit_rows(rng, 26, 8)
        pl = np.concatenate([case["priv_label"], np.zeros(12, np.int32)])
        sl = np.concatenate([case["syn_label"], np.zeros(26, np.int32)])
        padded = vote(pe, pl, se, sl, q=4, priv_mask=pm, syn_mask=sm)
        np.testing.assert_allclose(padded[0][:70], base[0], atol=1e-6)
        np.testing.assert_allclose(padded[1][:70], base[1], atol=1e-6)
        np.testing.assert_array_equal(padded[0][70:], 0.0)
        np.testing.assert_array_equal(padded[1][70:], 0.0)

    @chex.variants(with_jit=True, without_jit=True)
    @pytest.mark.slow
    def test_party_axis_is_vmap_of_single_party(self):
        vote = self.variant(voting.top_q_votes_parties, static_argnames=STATIC)
        cases = [_random_case(20 + p, n_priv=10, n_syn=50, num_classes=2) for p in range(3)]
        syn = {k: cases[0][k] for k in ("syn_emb", "syn_label", "syn_mask")}
        stack = lambda k: np.stack([c[k] for c in cases])
        near, far = vote(
            stack("priv_emb"), stack("priv_label"), **syn, q=3, priv_mask=stack("priv_mask")
        )
        chex.assert_shape([near, far], (3, 50))
        for p, case in enumerate(cases):
            want = reference_votes(**{**case, **syn}, q=3)
            np.testing.assert_allclose(near[p], want[0], atol=1e-5)
            np.testing.assert_allclose(far[p], want[1], atol=1e-5)

    @chex.variants(with_jit=True)
    @pytest.mark.slow
    def test_split_candidates_merge_to_the_full_result(self):
        """Candidates of two row shards, merged and scattered per shard, equal one search."""
        cands = self.variant(voting.top_q_candidates, static_argnames=STATIC)
        merge = self.variant(voting.merge_candidates, static_argnames=("q",))
        scatter = self.variant(voting.candidate_histogram, static_argnames=("n_syn",))
        case = _random_case(31, n_priv=12, n_syn=80, num_classes=2)
        full = jax.jit(voting.top_q_votes, static_argnames=STATIC)(**case, q=4)
        pm = case["priv_mask"]
        halves = [slice(0, 40), slice(40, 80)]
        found = [
            cands(
                case["priv_emb"],
                case["priv_label"],
                case["syn_emb"][h],
                case["syn_label"][h],
                q=4,
                syn_mask=case["syn_mask"][h],
            )
            for h in halves
        ]
        for which in (0, 1):
            vals = jnp.concatenate([f[which][0] for f in found], axis=1)
            idx = jnp.concatenate([found[0][which][1], found[1][which][1] + 40], axis=1)
            vals, idx = merge(vals, idx, q=4)
            parts = [scatter(vals, idx, n_syn=40, priv_mask=pm, offset=o) for o in (0, 40)]
            np.testing.assert_allclose(jnp.concatenate(parts), full[which], atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("q", [1, 2, 3, 4, 8, 16])
def test_jitted_matches_bruteforce_reference_sweep(q):
    """Many seeds and class counts, pools smaller than q, padded rows, blocked or not."""
    vote = jax.jit(voting.top_q_votes, static_argnames=STATIC)
    for seed, num_classes in [(0, 1), (1, 2), (2, 3), (3, 5), (4, 12)]:
        case = _random_case(seed + 10 * q, n_priv=24, n_syn=40, num_classes=num_classes)
        want = reference_votes(**case, q=q)
        for block_size in (None, 7):
            got = vote(**case, q=q, block_size=block_size)
            np.testing.assert_allclose(got[0], want[0], atol=1e-5, err_msg=f"{seed}")
            np.testing.assert_allclose(got[1], want[1], atol=1e-5, err_msg=f"{seed}")


def test_vote_weights_are_geometric_and_validated():
    np.testing.assert_array_equal(voting.vote_weights(4), [1.0, 0.5, 0.25, 0.125])
    assert voting.vote_weights(8).sum() == 2.0 - 2.0**-7
    for bad in (0, -1, 2.0, True):
        with np.testing.assert_raises_regex(ValueError, "q must be"):
            voting.vote_weights(bad)


def test_compiled_once_across_populations_in_one_bucket():
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def vote(pe, pl, se, sl, sm):
        return voting.top_q_votes(pe, pl, se, sl, q=4, syn_mask=sm)

    rng = np.random.default_rng(3)
    pe, pl = unit_rows(rng, 16, 8), rng.integers(0, 2, 16).astype(np.int32)
    for n in (37, 50, 63):
        size = bucket_size(n)
        assert size == 64
        se, sm = pad_rows(unit_rows(rng, n, 8), size)
        sl, _ = pad_rows(rng.integers(0, 2, n).astype(np.int32), size)
        near, far = vote(pe, pl, se, sl, sm)
        want = reference_votes(pe, pl, se[:n], sl[:n], 4)
        np.testing.assert_allclose(near[:n], want[0], atol=1e-5)
        np.testing.assert_allclose(far[:n], want[1], atol=1e-5)
