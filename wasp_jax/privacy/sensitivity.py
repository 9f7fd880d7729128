"""The sensitivity of one round's vote release, derived from the kernel's own vote weights.

One private record adds the q distinct weights `vote_weights(q)` (1, 1/2, 1/4, ...) to each
released histogram, inside its class. Per histogram the L2 change is ||w||_2 under
add/remove; the released histograms add in quadrature; replace-one multiplies by sqrt(2)
(two non-negative vectors, disjoint at worst). `tests/test_privacy.py` checks this by brute
force over neighbouring datasets. See docs/method.md §6.3.

`classic_delta` is the original code's Delta, kept for the compat accounting (§6.5).
"""

from __future__ import annotations

import numpy as np

from wasp_jax.config import ADJACENCIES
from wasp_jax.kernels.voting import vote_l2_sensitivity, vote_weights


def check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def l2_sensitivity(q: int, *, num_histograms: int = 2, adjacency: str = "add_remove") -> float:
    """L2 sensitivity of one round's release of ``num_histograms`` Top-Q vote histograms.

    Args:
      q: votes per private record, >= 1.
      num_histograms: released histograms per round (2 = nearest and farthest), >= 1.
      adjacency: "add_remove" or "replace_one".

    Returns:
      The L2 sensitivity of the concatenated release.
    """
    q = check_int("q", q, 1)
    num_histograms = check_int("num_histograms", num_histograms, 1)
    check_choice("adjacency", adjacency, ADJACENCIES)
    return vote_l2_sensitivity(q, num_histograms, replace_one=adjacency == "replace_one")


def classic_delta(q: int, *, contrastive: bool = True) -> float:
    """The original code's sensitivity Delta (docs/method.md §6.5) without its XOR bug.

    1 for q = 1, sum(w) = 2 - 2**(1-q) for 1 < q < 6, 2 for q >= 6; doubled when both
    histograms are released (contrastive prompts). q = 8 contrastive gives 4.
    """
    q = check_int("q", q, 1)
    base = 1.0 if q == 1 else (float(vote_weights(q).sum()) if q < 6 else 2.0)
    return 2.0 * base if contrastive else base
