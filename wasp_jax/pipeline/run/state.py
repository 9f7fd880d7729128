"""The run state: what a run has done so far, typed, and serialised only at checkpoint time.

`RunState` is what `wasp_jax.pipeline.run.checkpoint` writes after every stage and reads back on
resume: the finished stages, the synthetic population, the privacy ledger, each round's
`RoundDecision` (the post-noise selection and the next budgets), the metrics rows written so far,
the progress of the open round, for replay the next unused pool row per (PLM, class), and
the fingerprints of the run's inputs (`wasp_jax.pipeline.run.fingerprint`). Everything in it is
public (synthetic text, post-noise values, the ledger) except one value: the HMAC of the
private data file keyed with the run's secret, which is one reason the checkpoint lives in
the workdir's private part and is never released (docs/method.md).

Stages never change the state: they return typed results (`wasp_jax.pipeline.run.results`)
and the runner applies them here (`RunState.apply`) before it commits the stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from wasp_jax.models.api.spend import add_usage
from wasp_jax.pipeline.run.population import Population
from wasp_jax.pipeline.run.results import Decided, Drawn, Weighted
from wasp_jax.privacy.ledger import RunLedger


@dataclasses.dataclass
class RoundDecision:
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
    #: PLM name -> what tuning it before the round did (`wasp_jax.pipeline.stages.tuning`)
    tuning: dict[str, dict] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunState:
    """Everything a resumed run needs; see the module docstring."""

    ledger: RunLedger
    done: list[str] = dataclasses.field(default_factory=list)
    population: Population = dataclasses.field(default_factory=Population)
    decisions: dict[int, RoundDecision] = dataclasses.field(default_factory=dict)
    metrics: list[dict] = dataclasses.field(default_factory=list)
    current: RoundProgress = dataclasses.field(default_factory=RoundProgress)
    pool_next: list[list[int]] | None = None
    n_embedded: int = 0
    fingerprints: dict[str, str] = dataclasses.field(default_factory=dict)
    #: the extra zero-shot rows ({text, label, plm}) that make the baseline as large as the
    #: synthetic set (public: the PLMs never saw private data for them)
    baseline: list[dict] = dataclasses.field(default_factory=list)
    #: embeddings of the first `n_embedded` synthetic rows (checkpointed as an array)
    embeddings: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)
    #: a training weight per synthetic row, when the method gives them (an array too)
    sample_weights: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)

    def apply(self, result, *, num_classes: int) -> dict[str, np.ndarray]:
        """Applies one stage's typed result; returns the arrays to checkpoint with it."""
        if isinstance(result, Drawn) and result.baseline:
            for c, texts in enumerate(result.texts):
                self.baseline += [{"text": t, "label": c, "plm": result.plm} for t in texts]
            return {}
        if isinstance(result, Drawn):
            self._apply_drawn(result, num_classes)
            return {}
        if isinstance(result, Decided):
            self.decisions[result.round] = result.decision
            return self._apply_embeddings(result.embeddings) | dict(result.arrays)
        if isinstance(result, Weighted):
            self.sample_weights = result.weights
            arrays = self._apply_embeddings(result.embeddings)
            return arrays | {"sample_weights": result.weights.astype(np.float32)}
        raise TypeError(f"a stage returned {type(result).__name__}, not a stage result")

    def _apply_drawn(self, drawn: Drawn, num_classes: int) -> None:
        for c, texts in enumerate(drawn.texts):
            self.population.extend(list(texts), c, drawn.plm, drawn.round)
        cur = self.current
        cur.shortfall += drawn.shortfall
        for name, n in drawn.filtered.items():
            cur.filtered[name] = cur.filtered.get(name, 0) + int(n)
        if drawn.api_usage:
            add_usage(cur.api_usage.setdefault(drawn.plm_name, {}), drawn.api_usage)
        if drawn.tuning:
            cur.tuning[drawn.plm_name] = dict(drawn.tuning)
        if drawn.pool_next is not None:
            if self.pool_next is None:
                self.pool_next = [[0] * num_classes for _ in range(drawn.num_pools)]
            self.pool_next[drawn.plm] = list(drawn.pool_next)

    def _apply_embeddings(self, embeddings: np.ndarray | None) -> dict[str, np.ndarray]:
        if embeddings is None:
            return {}
        self.embeddings = embeddings
        self.n_embedded = len(embeddings)
        return {"syn_emb": embeddings}

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "done": list(self.done),
            "population": self.population.to_state(),
            "ledger": self.ledger.to_state(),
            "decisions": {str(t): dataclasses.asdict(p) for t, p in self.decisions.items()},
            "metrics": self.metrics,
            "current": dataclasses.asdict(self.current),
            "pool_next": self.pool_next,
            "n_embedded": self.n_embedded,
            "fingerprints": dict(self.fingerprints),
            "baseline": list(self.baseline),
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> RunState:
        return cls(
            ledger=RunLedger.from_state(d["ledger"]),
            done=list(d["done"]),
            population=Population.from_state(d["population"]),
            decisions={
                int(t): RoundDecision(**p)
                for t, p in (d["decisions"] if "decisions" in d else d["plans"]).items()
            },
            metrics=list(d["metrics"]),
            current=RoundProgress(**d["current"]),
            pool_next=d["pool_next"],
            n_embedded=int(d["n_embedded"]),
            fingerprints=dict(d.get("fingerprints") or {}),
            baseline=list(d.get("baseline") or []),
        )
