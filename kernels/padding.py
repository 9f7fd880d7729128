"""Shape buckets and padding, so that jit compiles once per bucket instead of once per size.

Every bucket rule of the package lives here; all are pure functions of Python ints:

* :func:`bucket_size` (vote stage rows): ``multiple * m * 2**e`` with m in {4, 5, 6, 7}
  (at most 25% padding), or ``minimum`` for small sizes.
* :func:`length_bucket` (encoder token lengths): the next of 16, 32, ..., 512, capped.
* :func:`row_bucket` (encoder batch rows): a power of two, rounded up to a multiple.
* :func:`bucket_pow2` (generation rows and new-token slots): the next power of two.
* :func:`bucket_prompt_len` (generation prompt slots): multiples of 64, then of 128.

Padded rows are marked False in the mask that :func:`pad_rows` returns.

Example::

    size = bucket_size(1080, multiple=8)          # 1280
    emb, mask = pad_rows(emb, size)               # (1280, d), (1280,) bool
"""

import math

import jax.numpy as jnp
import numpy as np

_STEPS = (4, 5, 6, 7)

#: Token-length buckets of encoder batches (the last is BERT's usual position limit).
LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)


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


def length_bucket(n: int, max_length: int) -> int:
    """Smallest of :data:`LENGTH_BUCKETS` >= n, capped at ``max_length``."""
    for b in LENGTH_BUCKETS:
        if b >= n:
            return min(b, max_length)
    return max_length


def row_bucket(n: int, batch_size: int, multiple: int = 1) -> int:
    """Rows to pad ``n`` texts to: a power of two <= batch_size, rounded up to ``multiple``."""
    rows = 1
    while rows < n:
        rows *= 2
    rows = min(rows, max(batch_size, n))
    return -(-rows // multiple) * multiple


def bucket_pow2(n: int, minimum: int = 1) -> int:
    """Smallest power of two >= max(n, minimum)."""
    return 1 << max(0, math.ceil(math.log2(max(n, minimum, 1))))


def bucket_prompt_len(n: int) -> int:
    """Prompt slots for a prompt of `n` tokens: multiples of 64 up to 256, then of 128."""
    n = max(n, 2)
    step = 64 if n <= 256 else 128
    return step * math.ceil(n / step)


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
