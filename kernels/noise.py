"""The one noise sampler of every release: the discrete Gaussian on an integer lattice.

Every value the project releases about the private data is a sum of bounded per-record
contributions that lies on a lattice ``step * Z`` (Top-Q votes are multiples of 2^-(Q-1),
counts are integers, clipped embeddings are rounded to a grid before they are summed).
It is released as ``step * (clean + X)`` with X drawn from the discrete Gaussian
N_Z(0, s^2), P(X = x) proportional to exp(-x^2 / (2 s^2)) on the integers, with s = sigma /
step (Canonne, Kamath and Steinke 2020). Unlike a float Gaussian, whose outputs sit on a
fixed float grid that differs between neighbouring inputs, every output of the lattice
mechanism is possible under every input: there is no support to tell them apart by.

Sampling is exact integer arithmetic on 128 secret random bits per draw (four uint32 words,
from ``wasp_jax.privacy.noise_source``): ``threshold_table(s)`` holds floor(2^128 P(X <= k))
for every k of the support |k| <= ceil(TAIL * s), computed in 60-digit decimal arithmetic,
and ``discrete_gaussian`` returns the number of thresholds at or below the uniform word, by a
vectorised binary search (no float touches the draw; the caller jits it). The implemented
distribution differs from N_Z(0, s^2) in total variation by at most the truncated tail plus
the threshold rounding, below 2^-100 per draw for every supported s (docs/method.md §2.5).

Example::

    table = threshold_table(452.0)                     # s in lattice units
    x = discrete_gaussian(words, table)                # words: (n, 4) uint32 -> (n,) int32
"""

from __future__ import annotations

import decimal
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

#: uint32 words per draw (128 uniform bits).
WORDS = 4
#: The support is truncated at |k| <= ceil(TAIL * s): the tail mass beyond is < 1e-40.
TAIL = 14.0
#: Smallest and largest s (lattice units) the sampler accepts. Below MIN_SCALE the
#: discrete Gaussian's privacy differs measurably from the continuous one's; above
#: MAX_SCALE the threshold table exceeds ~60 MiB.
MIN_SCALE = 64.0
MAX_SCALE = 2.0**17
#: Bound on the total-variation distance between one implemented draw and N_Z(0, s^2).
TV_PER_DRAW = 2.0**-100
_PREC = 60


def lattice_step(sigma: float, natural_step: float) -> float:
    """The lattice step of a release: ``natural_step`` halved until sigma / step >= MIN_SCALE.

    Args:
      sigma: noise std in release units, > 0.
      natural_step: a power of two on whose multiples every clean value lies (2^-(Q-1) for
        Top-Q votes, 1 for counts).

    Returns:
      A power of two dividing ``natural_step`` (clean values stay on its lattice).

    Raises:
      ValueError: sigma / natural_step above MAX_SCALE (the table would be too large).
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    mant, _ = math.frexp(natural_step)
    if natural_step <= 0 or mant != 0.5:
        raise ValueError(f"natural_step must be a power of two, got {natural_step!r}")
    step = float(natural_step)
    if sigma / step > MAX_SCALE:
        raise ValueError(
            f"sigma / lattice step = {sigma / step:.4g} exceeds {MAX_SCALE:.0f}: the exact "
            "sampler's table would be too large; lower voting.q or raise epsilon"
        )
    while sigma / step < MIN_SCALE:
        step /= 2.0
    return step


@functools.lru_cache(maxsize=16)
def threshold_table(scale: float) -> np.ndarray:
    """(2m, 4) uint32 words of floor(2^128 P(X <= k)), k = -m .. m-1, X ~ N_Z(0, scale^2).

    Row k + m holds the 128-bit threshold as four big-endian uint32 words; m = ceil(TAIL *
    scale). Computed with 60-digit decimals: each threshold is within 1 of the exact one.
    """
    scale = float(scale)
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be in [{MIN_SCALE}, {MAX_SCALE}], got {scale!r}")
    m = math.ceil(TAIL * scale)
    with decimal.localcontext() as ctx:
        ctx.prec = _PREC
        two_s2 = 2 * decimal.Decimal(scale) ** 2
        ratio = (-1 / two_s2).exp()  # p(1) / p(0)
        step = (-2 / two_s2).exp()  # ratio(k+1) / ratio(k)
        half = [decimal.Decimal(1)]  # p(0), p(1), ..., p(m), unnormalised
        for _ in range(m):
            half.append(half[-1] * ratio)
            ratio *= step
        pmf = half[:0:-1] + half  # p(-m) .. p(m)
        total = sum(pmf)
        scale128 = decimal.Decimal(2) ** 128 / total
        thresholds = []
        acc = decimal.Decimal(0)
        for p in pmf[:-1]:
            acc += p
            thresholds.append(int((acc * scale128).to_integral_value(decimal.ROUND_FLOOR)))
    mask = 0xFFFFFFFF
    return np.array(
        [[(t >> 96) & mask, (t >> 64) & mask, (t >> 32) & mask, t & mask] for t in thresholds],
        dtype=np.uint32,
    )


def _less_equal(a, b):
    """a <= b for 128-bit numbers given as (..., 4) big-endian uint32 words."""
    result = jnp.ones(a.shape[:-1], bool)  # equal so far -> <=
    for i in range(WORDS - 1, -1, -1):
        result = jnp.where(a[..., i] == b[..., i], result, a[..., i] < b[..., i])
    return result


def discrete_gaussian(words: jax.Array, table: jax.Array) -> jax.Array:
    """Discrete Gaussian draws from uniform 128-bit words.

    Args:
      words: (..., 4) uint32, independent uniform words (big-endian within a draw).
      table: (2m, 4) uint32 ``threshold_table(scale)``.

    Returns:
      (...) int32 draws in [-m, m]: the number of thresholds <= the word, minus m.
    """
    words = jnp.asarray(words, jnp.uint32)
    table = jnp.asarray(table, jnp.uint32)
    n = table.shape[0]
    lo = jnp.zeros(words.shape[:-1], jnp.int32)
    hi = jnp.full(words.shape[:-1], n, jnp.int32)

    def body(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) // 2
        at_or_below = _less_equal(table[jnp.minimum(mid, n - 1)], words) & (lo < hi)
        return jnp.where(at_or_below, mid + 1, lo), jnp.where(at_or_below | (lo >= hi), hi, mid)

    lo, _ = jax.lax.fori_loop(0, max(1, int(n).bit_length()), body, (lo, hi))
    return lo - n // 2
