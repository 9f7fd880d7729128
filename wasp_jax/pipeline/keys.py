"""The run's randomness: named JAX key streams and seeded host generators.

`streams(seed)` splits the run's root key once into the generation stream and the DP-noise
stream; every stage derives its keys from one of them with `fold_in(stream, round, plm,
class)`, so no RNG state is saved and a resumed run draws exactly what an uninterrupted one
draws. The noise stream is used by the vote stage only. Host-side choices (subsampling, the
per-round split, prompt variants) use `np.random.Generator`s seeded from
(seed, named stream, ids).
"""

import jax
import numpy as np

#: Host-rng stream ids (mixed into np.random.default_rng seeds).
HOST_STREAMS = {"data": 1, "prompts": 2, "generate": 3, "split": 4, "style": 5, "control": 6}


def streams(seed: int) -> tuple[jax.Array, jax.Array]:
    """(generation root, DP-noise root) of a run."""
    gen_root, noise_root = jax.random.split(jax.random.key(seed), 2)
    return gen_root, noise_root


def host_rng(seed: int, stream: str, *ids: int) -> np.random.Generator:
    """A host generator for (run seed, named stream, round/plm/class ids)."""
    return np.random.default_rng([seed, HOST_STREAMS[stream], *ids])
