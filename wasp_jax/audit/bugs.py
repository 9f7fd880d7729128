"""Mechanisms the privacy audit runs: the real release, and planted bugs it must catch.

Each mechanism maps (release, neighbours, which dataset, trials) to one score per trial; the
auditor (``wasp_jax.audit.runner``) thresholds the scores. Every trial is an independent
run of a release; the score is what an attacker computes from the released values:

* ``secure``: the real release function with a fresh 256-bit secret per trial
  (``NoiseSource.secure(secrets.token_bytes(32))``); score: the released vector projected
  on the difference of the clean outputs of D and D' (the likelihood-ratio statistic for
  Gaussian noise).
* ``seeded``: the real release function with noise keyed by a public seed (a new one per
  trial, known to the attacker), as ``privacy.noise = "seeded"`` does. The attacker
  regenerates the noise from the seed (the same call on a dataset whose clean output it
  knows) and subtracts it before projecting.
* ``sigma_halved``: the real release function with half the plan's sigma.
* ``q1_sensitivity``: sigma calibrated for the sensitivity derived for Q = 1 while Q votes
  are cast (the release's own sensitivity check skipped, as a caller with this bug would).
* ``float32``: the clean values plus ``sigma * jax.random.normal(key, float32)`` with a fresh
  key per trial. Score: how many of the coordinates where D and D' differ hold a value that
  is impossible under D' (not clean' + sigma times one of the 2^23 values float32
  ``jax.random.normal`` can return); under D' it is always 0.
"""

from __future__ import annotations

import functools
import secrets

import jax
import jax.numpy as jnp
import numpy as np

from wasp_jax.audit.data import AuditedRelease, Neighbours, release_vector
from wasp_jax.privacy.noise_source import NoiseSource

MECHANISMS = ("secure", "seeded", "sigma_halved", "q1_sensitivity", "float32")
BUGS = MECHANISMS[1:]
_CHUNK = 4096


def applies(mechanism: str, release: AuditedRelease) -> bool:
    """Whether a planted bug changes this release (Q = 1 changes nothing for counts or Q=1)."""
    if mechanism == "q1_sensitivity":
        return release.kind != "usefulness" and release.q > 1
    return True


def mechanism_sigma(mechanism: str, release: AuditedRelease) -> float:
    """The noise std the mechanism adds (the plan's, halved, or calibrated for Q = 1)."""
    if mechanism == "sigma_halved":
        return release.sigma / 2.0
    if mechanism == "q1_sensitivity":
        return release.sigma * release.derived_sensitivity(1) / release.derived_sensitivity()
    return release.sigma


class Clean:
    """The clean outputs of D and D' (sigma = 0) and, per block, the centre and direction of
    the projection (the unit difference of the two clean outputs)."""

    def __init__(self, release: AuditedRelease, nb: Neighbours):
        src = NoiseSource.seeded(0)  # unused: sigma = 0 draws no noise
        self.d = release_vector(release, src, nb, nb.d, sigma=0.0)
        self.d_prime = release_vector(release, src, nb, nb.d_prime, sigma=0.0)
        self.coords = nb.coords
        diff = self.d[nb.coords] - self.d_prime[nb.coords]  # (blocks, m)
        if not np.array_equal(diff, np.broadcast_to(diff[0], diff.shape)):
            raise RuntimeError("the audit's blocks differ: its dataset construction is wrong")
        self.diff = diff[0]
        self.norm = float(np.linalg.norm(self.diff))
        if self.norm == 0:
            raise RuntimeError("the canary changes nothing: the audit's dataset is wrong")
        self.mid = (self.d[nb.coords] + self.d_prime[nb.coords]) / 2.0

    def project(self, out: np.ndarray) -> np.ndarray:
        """(blocks,) scores of one flat release: each block's values on the direction."""
        return (out[self.coords] - self.mid) @ (self.diff / self.norm)


def scores(
    mechanism: str, release: AuditedRelease, nb: Neighbours, clean: Clean, which: str, trials: int
) -> np.ndarray:
    """(trials,) attacker scores of independent runs of ``mechanism`` on D or D' (``which``).

    Each call of the release function draws a new secret (seed, key) and gives one trial per
    block of ``nb``.
    """
    private = nb.d if which == "d" else nb.d_prime
    sigma = mechanism_sigma(mechanism, release)
    if mechanism == "float32":
        return _float32_scores(clean, which, sigma, trials)
    blocks = nb.coords.shape[0]
    out = np.empty(-(-trials // blocks) * blocks)
    for i in range(0, trials, blocks):
        if mechanism == "seeded":
            seed = secrets.randbits(62)  # public: the attacker reads it from config.json
            vec = release_vector(release, NoiseSource.seeded(seed), nb, private, sigma=sigma)
            again = release_vector(release, NoiseSource.seeded(seed), nb, nb.d_prime, sigma=sigma)
            vec = vec - (again - clean.d_prime)  # the regenerated noise, subtracted
        else:
            src = NoiseSource.secure(secrets.token_bytes(32))
            check = mechanism != "q1_sensitivity"
            vec = release_vector(release, src, nb, private, sigma=sigma, check=check)
        out[i : i + blocks] = clean.project(vec)
    return out[:trials]


# ------------------------------------------------------------------ float32 Gaussian noise


@functools.partial(jax.jit, static_argnums=1)
def _normals(key_data, dim):
    keys = jax.random.wrap_key_data(key_data, impl="threefry2x32")
    return jax.vmap(lambda k: jax.random.normal(k, (dim,), jnp.float32))(keys)


def float32_noise(trials: int, dim: int, sigma: float) -> np.ndarray:
    """(trials, dim) float32 ``sigma * jax.random.normal`` with a fresh random key per trial."""
    words = np.frombuffer(secrets.token_bytes(8 * trials), np.uint32).reshape(trials, 2)
    return np.float32(sigma) * np.asarray(_normals(jnp.asarray(words), dim))


@functools.lru_cache(maxsize=1)
def float32_normal_values() -> np.ndarray:
    """Every value float32 ``jax.random.normal`` can return, sorted (2^23 of them).

    Its uniform draw keeps 23 random mantissa bits: f = m / 2^23, u = max(lo, 2 f + lo) with
    lo the float32 just above -1, and the normal is sqrt(2) erfinv(u).
    """
    m = jnp.arange(2**23, dtype=jnp.uint32)
    one = jnp.uint32(np.float32(1.0).view(np.uint32))
    f = jax.lax.bitcast_convert_type(m | one, jnp.float32) - jnp.float32(1.0)
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0), dtype=np.float32)
    u = jnp.maximum(lo, f * (jnp.float32(1.0) - lo) + lo)
    values = np.asarray(jnp.float32(np.sqrt(2.0)) * jax.lax.erf_inv(u))
    return np.unique(values)


def _float32_scores(clean: Clean, which: str, sigma: float, trials: int) -> np.ndarray:
    """The float32 mechanism on block 0's coordinates where D and D' differ (the others are
    independent of them and of the canary: the test ignores them)."""
    cols = clean.coords[0][np.flatnonzero(clean.diff)]
    base = (clean.d if which == "d" else clean.d_prime)[cols].astype(np.float32)
    scaled = np.unique(np.float32(sigma) * float32_normal_values())
    # outputs possible under D' at each of those coordinates (sorted: rounding of clean' + t
    # is monotone in t)
    possible = [np.float32(clean.d_prime[j]) + scaled for j in cols]
    out = np.empty(trials)
    for start in range(0, trials, _CHUNK):
        n = min(_CHUNK, trials - start)
        y = base + float32_noise(n, cols.size, sigma)
        impossible = np.zeros(n)
        for c, s in enumerate(possible):
            idx = np.minimum(np.searchsorted(s, y[:, c]), s.size - 1)
            impossible += s[idx] != y[:, c]
        out[start : start + n] = impossible
    return out
