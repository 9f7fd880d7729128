"""Shape buckets and padding, so that jit compiles once per bucket instead of once per size.

Bucket sizes are ``multiple * m * 2**e`` with m in {4, 5, 6, 7} (at most 25% padding), or
``minimum`` for small sizes. Padded rows are marked False in the returned mask.

Example::

    size = bucket_size(1080, multiple=8)          # 1280
    emb, mask = pad_rows(emb, size)               # (1280, d), (1280,) bool
"""

import jax.numpy as jnp
import numpy as np

_STEPS = (4, 5, 6, 7)


def bucket_size(n: int, *, multiple: int = 1, minimum: int = 64) -> int:
    """Smallest bucket >= n (and >= minimum) that is a multiple of ``multiple``.

    Args:
      n: number of real rows, >= 0.
      multiple: the bucket is divisible by this (e.g. the mesh size), >= 1.
      minimum: smallest bucket, >= 1.

    Returns:
      The padded size.
    """
    if n < 0 or multiple < 1 or minimum < 1:
        raise ValueError(
            f"need n >= 0, multiple >= 1, minimum >= 1; got {n}, {multiple}, {minimum}"
        )
    units = -(-max(n, minimum) // multiple)
    if units <= _STEPS[0]:
        return units * multiple
    exp = 0
    while _STEPS[-1] << exp < units:
        exp += 1
    best = next(m << exp for m in _STEPS if m << exp >= units)
    return best * multiple


def pad_rows(x, size: int, *, fill=0):
    """Pads axis 0 of ``x`` (NumPy or JAX array) to ``size`` rows with ``fill``.

    Returns:
      (padded, mask) where mask is a (size,) NumPy bool array, True for the original rows.
    """
    n = x.shape[0]
    if size < n:
        raise ValueError(f"bucket size {size} is smaller than the {n} rows to pad")
    mask = np.arange(size) < n
    if size == n:
        return x, mask
    if isinstance(x, np.ndarray):
        pad = np.full((size - n, *x.shape[1:]), fill, dtype=x.dtype)
        return np.concatenate([x, pad], axis=0), mask
    pad = jnp.full((size - n, *x.shape[1:]), fill, dtype=x.dtype)
    return jnp.concatenate([x, pad], axis=0), mask
