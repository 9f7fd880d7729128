"""Gaussian noise for the vote histograms (ALGORITHM.md 2.5).

``add_gaussian_noise`` adds i.i.d. N(0, sigma^2) to every entry. ``add_party_noise`` is the
multi-party form: each of the L parties noises its own histogram with sigma / sqrt(L) and the
server sums them, so the aggregate noise std is sigma (this assumes secure aggregation).

JAX's PRNG (threefry) is fine for research-grade DP but is not a cryptographically secure
generator; a production deployment should draw the noise from a CSPRNG.

Example::

    noisy = add_gaussian_noise(jax.random.key(0), hist, sigma=3.53)
"""

import chex
import jax
import jax.numpy as jnp


def add_gaussian_noise(key: jax.Array, hist: jax.Array, *, sigma: float | jax.Array) -> jax.Array:
    """Returns ``hist + sigma * N(0, I)``; ``sigma`` may be traced (no recompile per value).

    Args:
      key: typed PRNG key of the DP noise stream.
      hist: any-shape float array.
      sigma: noise standard deviation, >= 0. ``sigma == 0`` returns ``hist`` exactly.

    Returns:
      Array of ``hist``'s shape and dtype.
    """
    chex.assert_type(hist, float)
    noise = jax.random.normal(key, hist.shape, hist.dtype)
    return hist + jnp.asarray(sigma, hist.dtype) * noise


def add_party_noise(
    key: jax.Array, party_hist: jax.Array, *, sigma: float | jax.Array
) -> jax.Array:
    """Noises each party's histogram with sigma / sqrt(L) and sums over parties.

    Args:
      key: typed PRNG key.
      party_hist: (num_parties, ...) float per-party clean histograms.
      sigma: std of the aggregate noise.

    Returns:
      (...) the sum over parties of the noised histograms.
    """
    num_parties = party_hist.shape[0]
    keys = jax.random.split(key, num_parties)
    per_party_sigma = jnp.asarray(sigma, party_hist.dtype) / jnp.sqrt(float(num_parties))
    noised = jax.vmap(lambda k, h: add_gaussian_noise(k, h, sigma=per_party_sigma))(
        keys, party_hist
    )
    return noised.sum(axis=0)
