"""Gaussian noise kernels: moments, determinism, zero noise, party aggregation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from wasp_jax.kernels import noise


def _one_party(key, hist, *, sigma):
    return noise.add_party_noise(key, hist[None], sigma=sigma)


class NoiseTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_moments_within_standard_errors(self):
        add = self.variant(_one_party)
        n, sigma = 200_000, 2.0
        out = np.asarray(add(jax.random.key(0), jnp.full((n,), 3.0), sigma=sigma), np.float64)
        z = out - 3.0
        assert abs(z.mean()) < 5 * sigma / np.sqrt(n)
        # SE of the sample variance of a Gaussian is sigma^2 sqrt(2 / n).
        assert abs(z.var() - sigma**2) < 5 * sigma**2 * np.sqrt(2 / n)
        assert abs((z**3).mean() / sigma**3) < 5 * np.sqrt(15 / n)

    @chex.variants(with_jit=True, without_jit=True)
    def test_same_key_same_draw_different_keys_differ(self):
        add = self.variant(_one_party)
        hist = jnp.arange(1000, dtype=jnp.float32)
        a = add(jax.random.key(1), hist, sigma=1.5)
        b = add(jax.random.key(1), hist, sigma=1.5)
        c = add(jax.random.key(2), hist, sigma=1.5)
        np.testing.assert_array_equal(a, b)
        assert np.mean(np.asarray(a) != np.asarray(c)) > 0.99

    @chex.variants(with_jit=True, without_jit=True)
    def test_sigma_zero_returns_input_exactly(self):
        add = self.variant(_one_party)
        hist = jax.random.normal(jax.random.key(3), (513,))
        np.testing.assert_array_equal(add(jax.random.key(4), hist, sigma=0.0), hist)

    @chex.variants(with_jit=True, without_jit=True)
    def test_party_noise_sums_parties_with_total_std_sigma(self):
        add = self.variant(noise.add_party_noise)
        num_parties, n, sigma = 4, 100_000, 3.0
        party_hist = jnp.ones((num_parties, n))
        out = np.asarray(add(jax.random.key(5), party_hist, sigma=sigma), np.float64)
        chex.assert_shape(out, (n,))
        z = out - num_parties
        assert abs(z.mean()) < 5 * sigma / np.sqrt(n)
        assert abs(z.std() - sigma) < 5 * sigma / np.sqrt(2 * n)
        clean = add(jax.random.key(5), party_hist, sigma=0.0)
        np.testing.assert_array_equal(clean, np.full(n, num_parties, np.float32))
