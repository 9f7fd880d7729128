"""The release kinds of the vote stage and the L2 sensitivity of each, derived from what it sums.

One private record contributes, under add/remove adjacency:

* ``per_sample``: its q distinct vote weights w (1, 1/2, ...) per histogram: ||w||_2 each
  (``sensitivity.l2_sensitivity``; the paper's release).
* ``per_plm`` / ``per_cluster``: the same weights summed per segment of candidates; all q may
  land in one segment, so sum(w) per histogram (the L1 norm bounds the L2 norm, with equality
  when one segment takes them all).
* ``usefulness``: a 0/1 K-vector (probe k right or wrong on this record): sqrt(K).

Histograms add in quadrature. Under replace-one, a record's contribution is swapped for
another's: two non-negative vectors give ||u - v|| <= sqrt(2) max norm (vote kinds); two 0/1
vectors differ by at most 1 per entry, so usefulness stays sqrt(K).
``tests/test_release_kinds.py`` checks each bound by brute force over neighbouring datasets.
"""

from __future__ import annotations

import math

import numpy as np

from wasp_jax.config import ADJACENCIES
from wasp_jax.kernels.voting import vote_weights
from wasp_jax.privacy.sensitivity import check_choice, check_int, l2_sensitivity

KINDS = ("per_sample", "per_plm", "per_cluster", "usefulness")

#: What each release measures (written into the ledger).
MEASURES = {
    "per_sample": "Top-Q nearest/farthest vote histogram over every synthetic candidate",
    "per_plm": "Top-Q votes summed per PLM (one K-vector per histogram)",
    "per_cluster": "Top-Q votes summed per k-means cluster of the synthetic candidates",
    "usefulness": "per PLM, private records its synthetic data's linear probe classifies right",
}


def kind_sensitivity(
    kind: str,
    *,
    q: int = 1,
    num_histograms: int = 1,
    num_plms: int = 1,
    adjacency: str = "add_remove",
) -> float:
    """L2 sensitivity of one release of ``kind`` (see the module docstring for each bound).

    Args:
      kind: one of ``KINDS``.
      q: votes per private record (vote kinds).
      num_histograms: released histograms (1 = nearest, 2 = nearest and farthest; vote kinds).
      num_plms: K (usefulness).
      adjacency: "add_remove" or "replace_one".
    """
    check_choice("kind", kind, KINDS)
    check_choice("adjacency", adjacency, ADJACENCIES)
    replace = adjacency == "replace_one"
    if kind == "per_sample":
        return l2_sensitivity(q, num_histograms=num_histograms, adjacency=adjacency)
    if kind in ("per_plm", "per_cluster"):
        q = check_int("q", q, 1)
        nh = check_int("num_histograms", num_histograms, 1)
        per_hist = float(np.sum(vote_weights(q)))
        return per_hist * math.sqrt(nh) * (math.sqrt(2.0) if replace else 1.0)
    return math.sqrt(check_int("num_plms", num_plms, 1))  # usefulness
