"""The run's randomness: the public generation stream, seeded host generators, and the noise.

Two kinds of randomness, kept apart:

* **Public choices** come from the run's seed, which is public (it sits in `config.json`).
  `generation_root(seed)` is the root JAX key of sampling; every stage derives its keys from
  it with `fold_in(root, round, plm, class)`, so no RNG state is saved and a resumed run
  draws exactly what an uninterrupted one draws. Host-side choices (the per-round split,
  prompt variants) use `np.random.Generator`s seeded from (seed, named stream, ids).
* **DP noise** never comes from the seed: `run_noise` keys it with the run's secret, drawn
  from the operating system's CSPRNG when the run first starts and kept only in its private
  folder (`wasp_jax.privacy.noise_source`). Only `privacy.noise = "seeded"` (tests and
  replication; NOT DP) derives it from the seed.
"""

import jax
import numpy as np

from wasp_jax.config import WaspConfig
from wasp_jax.privacy.noise_source import NoiseSource

#: Host-rng stream ids (mixed into np.random.default_rng seeds).
HOST_STREAMS = {"data": 1, "prompts": 2, "generate": 3, "split": 4, "style": 5, "control": 6}


def generation_root(seed: int) -> jax.Array:
    """The root key of generation (public: derived from the seed)."""
    return jax.random.split(jax.random.key(seed), 2)[0]


def host_rng(seed: int, stream: str, *ids: int) -> np.random.Generator:
    """A host generator for (run seed, named stream, round/plm/class ids)."""
    return np.random.default_rng([seed, HOST_STREAMS[stream], *ids])


def run_noise(cfg: WaspConfig, secret: bytes | None) -> NoiseSource:
    """The run's noise source: keyed by its secret, or by the seed under "seeded" (NOT DP)."""
    if cfg.privacy.noise == "seeded":
        return NoiseSource.seeded(cfg.seed)
    if secret is None:
        raise ValueError("a run with privacy.noise = 'secure' needs its secret")
    return NoiseSource.secure(secret)
