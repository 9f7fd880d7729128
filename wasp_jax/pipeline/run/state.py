"""The run state: what a run has done so far, typed, and serialised only at checkpoint time.

`RunState` is what `wasp_jax.pipeline.run.checkpoint` writes after every stage and reads back on
resume: the finished stages, the synthetic population, the privacy ledger, each round's
`RoundPlan` (the post-noise selection and the next budgets), the metrics rows written so far,
the progress of the open round, for replay the next unused pool row per (PLM, class), and
the fingerprints of the run's inputs (`wasp_jax.pipeline.run.fingerprint`). Everything in it is
public (synthetic text, post-noise values, the ledger) except one value: the HMAC of the
private data file keyed with the run's secret, which is one reason the checkpoint lives in
the workdir's private part and is never released (docs/method.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from wasp_jax.pipeline.run.population import Population
from wasp_jax.privacy.ledger import RunLedger


@dataclasses.dataclass
class RoundPlan:
    """Round t's decisions, made from its noisy votes (or random draws) before generation.

    Attributes:
      good, bad: per class, the population indices of the selected good / bad samples.
      weights: the PLMs' shares of the round's budget.
      budgets: the integer budget of every PLM.
      summary: post-noise vote summaries per histogram and class (None without votes).
    """

    good: list[list[int]]
    bad: list[list[int]]
    weights: list[float]
    budgets: list[int]
    summary: dict | None = None

    @property
    def selected(self) -> dict[str, list[list[int]]]:
        return {"good": self.good, "bad": self.bad}


@dataclasses.dataclass
class RoundProgress:
    """Counters of the round in progress (reset when its metrics row is written)."""

    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    shortfall: int = 0
    filtered: dict[str, int] = dataclasses.field(default_factory=dict)
    #: API PLM name -> usage counters (`wasp_jax.models.api.spend.FIELDS`)
    api_usage: dict[str, dict] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunState:
    """Everything a resumed run needs; see the module docstring."""

    ledger: RunLedger
    done: list[str] = dataclasses.field(default_factory=list)
    population: Population = dataclasses.field(default_factory=Population)
    plans: dict[int, RoundPlan] = dataclasses.field(default_factory=dict)
    metrics: list[dict] = dataclasses.field(default_factory=list)
    current: RoundProgress = dataclasses.field(default_factory=RoundProgress)
    pool_next: list[list[int]] | None = None
    n_embedded: int = 0
    fingerprints: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "done": list(self.done),
            "population": self.population.to_state(),
            "ledger": self.ledger.to_state(),
            "plans": {str(t): dataclasses.asdict(p) for t, p in self.plans.items()},
            "metrics": self.metrics,
            "current": dataclasses.asdict(self.current),
            "pool_next": self.pool_next,
            "n_embedded": self.n_embedded,
            "fingerprints": dict(self.fingerprints),
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> RunState:
        return cls(
            ledger=RunLedger.from_state(d["ledger"]),
            done=list(d["done"]),
            population=Population.from_state(d["population"]),
            plans={int(t): RoundPlan(**p) for t, p in d["plans"].items()},
            metrics=list(d["metrics"]),
            current=RoundProgress(**d["current"]),
            pool_next=d["pool_next"],
            n_embedded=int(d["n_embedded"]),
            fingerprints=dict(d.get("fingerprints") or {}),
        )
