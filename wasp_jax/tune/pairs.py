"""Preference pairs from post-noise scores: within a group that shares a prompt, a
candidate of higher score is preferred over one of lower score.

The scores are post-processing of a DP release (for WASP-proto, each candidate's margin to
the noisy class prototypes), so pairs built from them cost no privacy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Indices of preferred (``chosen``) and dispreferred (``rejected``) rows, and their class.

    Attributes:
      chosen, rejected: int64 [P], indices into the candidate rows.
      label: int64 [P], the class of both rows.
      gap: float64 [P], score(chosen) - score(rejected).
    """

    chosen: np.ndarray
    rejected: np.ndarray
    label: np.ndarray
    gap: np.ndarray

    def __len__(self) -> int:
        return len(self.chosen)

    def per_class(self, num_classes: int) -> list[int]:
        """How many pairs each class has."""
        return np.bincount(self.label, minlength=num_classes).astype(int).tolist()


def preference_pairs(
    scores: Sequence[float],
    labels: Sequence[int],
    groups: Sequence[int],
    *,
    min_gap: float,
    max_per_class: int = 0,
) -> Pairs:
    """Disjoint pairs inside each (class, group): the best row against the worst, the second
    best against the second worst, and so on, keeping a pair only if its score gap is at
    least `min_gap`; at most `max_per_class` per class (0 = no cap), widest gaps first.

    Args:
      scores: one post-noise score per row (higher = better).
      labels: the class of each row.
      groups: rows sharing a prompt share a group id (e.g. the generating PLM and round).
      min_gap: the smallest score difference a pair may have (>= 0).
      max_per_class: cap per class, 0 for none.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.int64)
    groups = np.asarray(groups, np.int64)
    if not (len(scores) == len(labels) == len(groups)):
        raise ValueError("scores, labels and groups must have one entry per row")
    if min_gap < 0 or not np.isfinite(min_gap):
        raise ValueError(f"min_gap must be a finite number >= 0, got {min_gap}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    chosen, rejected, label, gap = [], [], [], []
    for c in np.unique(labels):
        found = []
        for g in np.unique(groups[labels == c]):
            rows = np.flatnonzero((labels == c) & (groups == g))
            order = rows[np.argsort(-scores[rows], kind="stable")]
            for i in range(len(order) // 2):
                hi, lo = order[i], order[len(order) - 1 - i]
                d = scores[hi] - scores[lo]
                if d >= min_gap and d > 0:
                    found.append((d, int(hi), int(lo)))
        found.sort(key=lambda f: (-f[0], f[1]))
        if max_per_class:
            found = found[:max_per_class]
        for d, hi, lo in sorted(found, key=lambda f: f[1]):
            chosen.append(hi)
            rejected.append(lo)
            label.append(int(c))
            gap.append(d)
    as64 = lambda v: np.asarray(v, np.int64)
    return Pairs(as64(chosen), as64(rejected), as64(label), np.asarray(gap, np.float64))
