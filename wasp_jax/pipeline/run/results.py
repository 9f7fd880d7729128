"""What stages return: typed results that the runner applies to the run state and commits.

A stage reads the run's inputs (`wasp_jax.pipeline.run.inputs.RunInputs`) and state and
returns one of these; it changes neither. `RunState.apply` adds the result to the state and
names the arrays to checkpoint with the stage, and the runner commits both.

* `Drawn`: one PLM's new candidates of one round (generated or taken from a pool).
* `Decided`: one round's post-noise decision (selection and budgets), with the synthetic
  embeddings it computed and any public arrays to keep (e.g. cluster centres).
* `Weighted`: a training weight for every synthetic row (after the last round).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class Drawn:
    """One PLM's new candidates of one round.

    Attributes:
      plm, plm_name: the PLM's index and name.
      round: the round the candidates belong to (0 = the zero-shot start).
      texts: per class, the new texts in the order they are added.
      shortfall: how many fewer usable texts than the quotas were obtained.
      filtered: {filter name: texts it removed} (`wasp_jax.pipeline.stages.filters`).
      api_usage: an API PLM's request and token counters, or None.
      pool_next: replayed candidates: the next unused row of each class in this PLM's pool.
      num_pools: replayed candidates: how many pools the run reads.
      baseline: the texts are not candidates but rows of the zero-shot baseline that the
        evaluation compares the synthetic set with (kept apart, never in the synthetic set).
      tuning: what tuning the PLM on DP feedback before this round did (pairs, loss curve,
        seconds), or None when it was not tuned.
    """

    plm: int
    plm_name: str
    round: int
    texts: tuple[tuple[str, ...], ...]
    shortfall: int = 0
    filtered: Mapping[str, int] = dataclasses.field(default_factory=dict)
    api_usage: Mapping[str, float] | None = None
    pool_next: tuple[int, ...] | None = None
    num_pools: int = 0
    baseline: bool = False
    tuning: Mapping | None = None


@dataclasses.dataclass(frozen=True)
class Decided:
    """Round `round`'s decision, made from its noisy releases (or random draws).

    Attributes:
      round: the round.
      decision: the selection and the next budgets (`wasp_jax.pipeline.run.state`).
      embeddings: the embeddings of every synthetic row so far, or None if none were needed.
      arrays: public arrays to checkpoint with the stage ({name: array}).
    """

    round: int
    decision: object
    embeddings: np.ndarray | None = None
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Weighted:
    """A training weight for every synthetic row, and the embeddings computed for it."""

    weights: np.ndarray
    embeddings: np.ndarray | None = None
