"""Gaussian noise for the vote histograms (docs/method.md §2.5).

``add_party_noise``: each of the L parties noises its own histogram with i.i.d.
N(0, (sigma / sqrt(L))^2) and the server sums them, so the aggregate noise std is sigma (this
assumes secure aggregation). One party (L = 1) is the plain Gaussian mechanism.

JAX's PRNG (threefry) is fine for research-grade DP but is not a cryptographically secure
generator; a production deployment should draw the noise from a CSPRNG.

Example::

    noisy = add_party_noise(jax.random.key(0), hist[None], sigma=3.53)   # one party
"""

import jax
import jax.numpy as jnp


def add_party_noise(
    key: jax.Array, party_hist: jax.Array, *, sigma: float | jax.Array
) -> jax.Array:
    """Noises each party's histogram with sigma / sqrt(L) and sums over parties.

    Args:
      key: typed PRNG key.
      party_hist: (num_parties, ...) float per-party clean histograms.
      sigma: std of the aggregate noise, >= 0; may be traced (no recompile per value).
        ``sigma == 0`` returns the exact sum.

    Returns:
      (...) the sum over parties of the noised histograms.
    """
    num_parties = party_hist.shape[0]
    keys = jax.random.split(key, num_parties)
    per_party_sigma = jnp.asarray(sigma, party_hist.dtype) / jnp.sqrt(float(num_parties))
    noise = jax.vmap(lambda k: jax.random.normal(k, party_hist.shape[1:], party_hist.dtype))(keys)
    return (party_hist + per_party_sigma * noise).sum(axis=0)
