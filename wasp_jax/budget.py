"""Integer splits of a generation budget: over PLMs by their shares, and evenly over parts.

`allocate_budget` is largest-remainder rounding: a_k = floor(p_k * total), then the leftover
units go to the parts with the largest fractional parts (ties to the lower index), so
sum(a) == total exactly (docs/method.md §2.7). `split_evenly` is the uniform case with the
+1s rotated by an offset, so that round after round no class or PLM is always the one short.

Example::

    allocate_budget(np.array([0.5, 0.3, 0.2]), 7)   # [4, 2, 1]
    split_evenly(5, 2, offset=1)                     # [2, 3]
"""

import numpy as np


def allocate_budget(shares, total: int) -> list[int]:
    """Splits ``total`` samples according to ``shares`` (non-negative, summing to ~1).

    Args:
      shares: (K,) array-like of non-negative fractions (e.g. ``kernels.weights.plm_shares``).
      total: number of samples to allocate, >= 0.

    Returns:
      K Python ints with sum == total.
    """
    p = np.asarray(shares, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"shares must be a non-empty 1-D array of finite values >= 0, got {p}")
    if isinstance(total, bool) or not isinstance(total, int | np.integer) or total < 0:
        raise ValueError(f"total must be an integer >= 0, got {total!r}")
    if p.sum() <= 0:
        raise ValueError("shares must have a positive sum")
    exact = p / p.sum() * int(total)
    alloc = np.floor(exact).astype(np.int64)
    frac = exact - alloc
    left = int(total) - int(alloc.sum())
    order = np.argsort(-frac, kind="stable")
    if left > 0:
        alloc[order[:left]] += 1
    elif left < 0:
        alloc[order[::-1][:-left]] -= 1
    return [int(a) for a in alloc]


def split_evenly(total: int, parts: int, offset: int = 0) -> list[int]:
    """`total` split into `parts` integers differing by at most one; the +1s rotate by offset."""
    base, rem = divmod(total, parts)
    return [base + (1 if (i - offset) % parts < rem else 0) for i in range(parts)]
