"""The discrete Gaussian sampler: its exact distribution, the search, the lattice step."""

import bisect
import math

import chex
import numpy as np
import pytest
from scipy import stats
from wasp_jax.kernels import noise


def _reference_pmf(scale: float, m: int) -> np.ndarray:
    """N_Z(0, scale^2) on [-m, m], normalised over a support 4x wider (float64)."""
    wide = np.arange(-4 * m, 4 * m + 1, dtype=np.float64)
    w = np.exp(-(wide**2) / (2 * scale**2))
    return (w / w.sum())[3 * m : 5 * m + 1]


def _thresholds(table: np.ndarray) -> list[int]:
    return [int(a) << 96 | int(b) << 64 | int(c) << 32 | int(d) for a, b, c, d in table]


def _words_of(values: list[int]) -> np.ndarray:
    mask = 0xFFFFFFFF
    return np.array(
        [[(v >> 96) & mask, (v >> 64) & mask, (v >> 32) & mask, v & mask] for v in values],
        np.uint32,
    )


def test_table_gives_the_discrete_gaussian_exactly():
    scale = 64.0
    table = noise.threshold_table(scale)
    m = table.shape[0] // 2
    assert m == math.ceil(noise.TAIL * scale)
    thr = _thresholds(table)
    assert thr == sorted(thr)
    probs = np.diff(np.array([0, *thr, 2**128], dtype=object)) / float(2**128)
    want = _reference_pmf(scale, m)
    assert 0.5 * np.abs(probs.astype(np.float64) - want).sum() < 1e-13
    # symmetric up to the floor of each threshold
    assert all(abs(thr[i] + thr[2 * m - 1 - i] - 2**128) <= 2 for i in range(2 * m))


class SamplerTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_search_counts_thresholds_at_or_below_the_word(self):
        table = noise.threshold_table(64.0)
        thr, m = _thresholds(table), table.shape[0] // 2
        rng = np.random.default_rng(0)
        picks = rng.choice(np.flatnonzero(np.diff([0, *thr]) > 1), 200)
        values = [0, 2**128 - 1] + [thr[i] for i in picks] + [thr[i] - 1 for i in picks]
        values += [int(v) for v in rng.integers(0, 2**63, 100)] + [
            int(a) << 64 | int(b) for a, b in rng.integers(0, 2**63, (100, 2))
        ]
        got = np.asarray(self.variant(noise.discrete_gaussian)(_words_of(values), table))
        want = [bisect.bisect_right(thr, v) - m for v in values]
        np.testing.assert_array_equal(got, want)
        assert got[1] == m  # the largest word draws the top of the support

    @chex.variants(with_jit=True, without_jit=True)
    def test_draws_follow_the_pmf(self):
        scale, n = 64.0, 200_000
        table = noise.threshold_table(scale)
        m = table.shape[0] // 2
        words = np.random.default_rng(1).integers(0, 2**32, (n, 4), dtype=np.uint32)
        x = np.asarray(self.variant(noise.discrete_gaussian)(words, table), np.int64)
        assert x.shape == (n,)
        assert abs(x.mean()) < 5 * scale / np.sqrt(n)
        assert abs(x.var() / scale**2 - 1) < 5 * np.sqrt(2 / n)
        # chi-square over 20 equiprobable bins of the exact pmf
        cdf = np.cumsum(_reference_pmf(scale, m))
        edges = np.searchsorted(cdf, np.linspace(0, 1, 21)[1:-1])
        observed = np.bincount(np.searchsorted(edges, x + m, side="right"), minlength=20)
        expected = np.diff([0, *cdf[edges - 1], 1.0]) * n
        assert stats.chisquare(observed, expected).pvalue > 1e-4

    @chex.variants(with_jit=True, without_jit=True)
    def test_neighbouring_inputs_have_the_same_support(self):
        # A float Gaussian's outputs sit on a grid that moves with the input; lattice outputs
        # are integers either way, so no output rules out the neighbouring input.
        table = noise.threshold_table(64.0)
        m = table.shape[0] // 2
        words = np.random.default_rng(2).integers(0, 2**32, (2, 50_000, 4), dtype=np.uint32)
        draw = self.variant(noise.discrete_gaussian)
        out0 = np.asarray(draw(words[0], table)) + 0
        out1 = np.asarray(draw(words[1], table)) + 1
        possible_under_1 = lambda v: -m + 1 <= v <= m + 1
        possible_under_0 = lambda v: -m <= v <= m
        assert all(possible_under_1(v) for v in out0)
        assert all(possible_under_0(v) for v in out1)


def test_lattice_step_divides_the_natural_step_and_keeps_64_units():
    assert noise.lattice_step(3.0, 2.0**-7) == 2.0**-7  # 3 * 128 = 384 units
    step = noise.lattice_step(0.2, 2.0**-7)
    assert 64 <= 0.2 / step < 128 and math.log2(step) == int(math.log2(step))
    assert noise.lattice_step(5.0, 1.0) == 2.0**-4  # counts: 5 * 16 = 80 units
    with pytest.raises(ValueError, match="power of two"):
        noise.lattice_step(1.0, 0.3)
    with pytest.raises(ValueError, match="voting.q"):
        noise.lattice_step(1e6, 2.0**-7)
    with pytest.raises(ValueError, match="sigma"):
        noise.lattice_step(0.0, 1.0)
    with pytest.raises(ValueError, match="scale"):
        noise.threshold_table(8.0)


def test_total_variation_bound_covers_the_tail_and_the_rounding():
    # mass beyond TAIL * scale (a Gaussian tail bound, 1 % slack for the lattice sum) plus
    # one 2^-128 floor per threshold at the largest supported scale
    tail = 2 * stats.norm.sf(noise.TAIL) * 1.01
    rounding = 2 * math.ceil(noise.TAIL * noise.MAX_SCALE) * 2.0**-128
    assert tail + rounding < noise.TV_PER_DRAW
