"""The WASP+ section of the run config (`WaspConfig.plus`, used by ``method="wasp_plus"``).

WASP+ releases aggregated statistics instead of per-sample vote histograms (docs/method.md
§9): per-PLM usefulness (the correct-counts of a linear probe fitted on each PLM's synthetic
data) and per-cluster vote totals over a public k-means clustering of the candidates. The run's
(epsilon, delta) is split between the two by the shares below (each over its T releases;
`wasp_jax.privacy.composition`).
"""

from __future__ import annotations

import dataclasses
import math

from wasp_jax.config.sections import _check


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlusConfig:
    """WASP+ (method "wasp_plus").

    Attributes:
        clusters: k-means clusters per class over each round's candidates, >= 1.
        temperature: softmax temperature of the PLM budgets over the noisy usefulness counts,
            in private records (> 0; larger is flatter).
        usefulness_share, cluster_share: the budget's split between the usefulness and the
            per-cluster (nearest and farthest) releases; each in (0, 1], summing to 1.
        sample_weights: write a training weight per synthetic row (from the last round's
            noisy cluster totals) into synthetic.jsonl.
        replay_window: in replay, candidate rows looked at per row drawn (>= 1): the next
            window x quota unused rows of a pool, drawn by cluster quotas.
    """

    clusters: int = 16
    temperature: float = 5.0
    usefulness_share: float = 0.5
    cluster_share: float = 0.5
    sample_weights: bool = True
    replay_window: int = 3

    def __post_init__(self):
        _check(self.clusters >= 1, "plus.clusters", f"must be >= 1, got {self.clusters}")
        _check(self.temperature > 0, "plus.temperature", f"must be > 0, got {self.temperature}")
        _check(self.replay_window >= 1, "plus.replay_window", "must be >= 1")
        shares = (self.usefulness_share, self.cluster_share)
        for name, v in zip(("usefulness_share", "cluster_share"), shares):
            _check(0 < v <= 1, f"plus.{name}", f"must be in (0, 1], got {v}")
        _check(
            math.isclose(sum(shares), 1.0, abs_tol=1e-9),
            "plus.usefulness_share",
            f"plus.usefulness_share + plus.cluster_share must sum to 1, got {sum(shares)!r}",
        )

    def fractions(self) -> dict[str, float]:
        """{release kind: budget share} of the kinds released."""
        return {"usefulness": self.usefulness_share, "per_cluster": self.cluster_share}
