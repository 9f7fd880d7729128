"""Committing a run's stages: skip the finished ones, apply each result, then write in order.

`Committer.stage` wraps every stage: it skips a finished one, times it, applies its typed
result to the `RunState` (`RunState.apply`) and commits it: `release/privacy.json` first,
then the checkpoint (`private/checkpoint/`: the stage's arrays, then `state.json`), then the
other outputs (`release/`). A crash between two of these writes can leave a ledger that is
ahead of the checkpoint, never one that is behind it. A stage that releases something about
the private data is recorded in the ledger before it runs, and persists its noisy release
before anything reads it; a resumed stage reuses that file, so a release is drawn once,
whatever the resumed process computes from the private data.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable

from wasp_jax import data as data_io
from wasp_jax.errors import DataWarning
from wasp_jax.pipeline.run.inputs import RunInputs
from wasp_jax.pipeline.run.state import RoundDecision, RunState

log = logging.getLogger("wasp_jax")

#: Why a run without noise records no vote summary.
WITHHELD = (
    "privacy.epsilon is inf, so the votes got no noise: any summary of them (mean, std, max "
    "per class) would reveal the private data, and none is written"
)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Committer:
    """Runs and commits the stages of one run (see the module docstring)."""

    def __init__(self, inputs: RunInputs, state: RunState):
        self.inputs, self.state = inputs, state
        self.resumed = len(state.done)
        self._start_n, self._start_t = len(state.population), time.perf_counter()

    @property
    def clean_votes(self) -> bool:
        """The run's votes get no noise (epsilon = inf): nothing computed from them is kept."""
        plan = self.inputs.plan
        return plan is not None and plan.sigma == 0

    def _hook(self, event: str) -> None:
        if self.inputs.hooks.on_stage:
            self.inputs.hooks.on_stage(event)

    def stage(
        self, name: str, metric: str, fn: Callable[[], object], *, releases_round: int | None = None
    ) -> None:
        """Runs stage `name` unless it is done, applies its result and commits it.

        `releases_round`: the stage releases round t's noisy statistics: the ledger records
        them before the stage runs.
        """
        if name in self.state.done:
            return
        self._hook(name + ":start")
        t0 = time.perf_counter()
        if releases_round is not None:
            self.state.ledger.record(releases_round)
        result = fn()
        if self.clean_votes and isinstance(getattr(result, "decision", None), RoundDecision):
            # no noise (epsilon = inf): a summary would be a statistic of the clean votes
            result.decision.summary = None
        arrays = self.state.apply(result, num_classes=self.inputs.task.num_classes)
        secs = self.state.current.stage_seconds
        secs[metric] = secs.get(metric, 0.0) + time.perf_counter() - t0
        self.state.done.append(name)
        self.commit(arrays)
        if metric == "generate":
            self._log_progress()
        self._hook(name + ":done")

    def _log_progress(self) -> None:
        """Samples kept of the whole budget, and an ETA from this process's pace."""
        done, total = len(self.state.population), self.inputs.cfg.generation.budget
        new, secs = done - self._start_n, time.perf_counter() - self._start_t
        eta = ""
        if 0 < new and done < total:
            eta = f", about {_duration((total - done) * secs / new)} left"
        log.info("progress: %d of %d samples (%.0f%%)%s", done, total, 100 * done / total, eta)

    def commit(self, arrays: dict | None = None) -> None:
        """Ledger, then checkpoint, then the other outputs (see the module docstring)."""
        self.write_ledger()
        self.inputs.ckpt.save(self.state, arrays)
        self.write_outputs(ledger=False)

    def write_ledger(self) -> None:
        if not self.inputs.writer:
            return
        path = self.inputs.release / "privacy.json"
        data_io.atomic_write_json(path, self.state.ledger.report())

    def write_outputs(self, *, ledger: bool = True) -> None:
        if not self.inputs.writer:
            return
        if ledger:
            self.write_ledger()
        inputs, weights = self.inputs, self.state.sample_weights
        rows = self.state.population.rows(inputs.task, list(inputs.plm_names))
        if weights is not None and len(weights) == len(rows):
            rows = [row | {"weight": float(w)} for row, w in zip(rows, weights)]
        data_io.atomic_write_jsonl(inputs.release / "synthetic.jsonl", rows)
        data_io.atomic_write_jsonl(inputs.release / "metrics.jsonl", self.state.metrics)

    def close_round(self, round_: int, weights, budgets, summary, selected) -> None:
        """Appends round `round_`'s metrics row (once) and commits it."""
        name = f"r{round_}/close"
        if name in self.state.done:
            return
        self._hook(name + ":start")
        cur, pop = self.state.current, self.state.population
        short = self._short_examples(round_, selected)
        self.state.metrics.append(
            {
                "round": round_,
                "plm_names": list(self.inputs.plm_names),
                "plm_weights": [float(w) for w in weights],
                "plm_budgets": [int(b) for b in budgets],
                "class_counts": pop.class_counts(self.inputs.task.num_classes),
                "stage_seconds": {k: round(v, 3) for k, v in cur.stage_seconds.items()},
                "noisy_vote_summary": None if self.clean_votes else summary,
                **({"vote_summary_withheld": WITHHELD} if self.clean_votes else {}),
                "selected": selected,
                "shortfall": cur.shortfall,
                "filtered": dict(cur.filtered),
                **({"api_usage": cur.api_usage} if cur.api_usage else {}),
                **({"tuning": cur.tuning} if cur.tuning else {}),
                **({"short_examples": short} if short else {}),
                "n_synthetic": len(pop),
            }
        )
        self.state.current = type(cur)()
        self.state.done.append(name)
        self.commit()

    def _short_examples(self, round_: int, selected) -> dict:
        """{"good"/"bad": {class name: examples}} of the classes whose contrastive prompts got
        fewer than S examples this round, warned about in one line."""
        if not selected or not self.inputs.cfg.generation.contrastive:
            return {}
        s, names = self.inputs.cfg.selection.s, self.inputs.task.labels
        short = {
            kind: {names[c]: len(rows) for c, rows in enumerate(selected[kind]) if len(rows) < s}
            for kind in ("good", "bad")
            if kind in selected
        }
        short = {kind: v for kind, v in short.items() if v}
        if short:
            told = "; ".join(
                f"{k}: " + ", ".join(f"{n!r} {m}" for n, m in v.items()) for k, v in short.items()
            )
            warnings.warn(
                f"round {round_}: fewer than S={s} examples in some prompts ({told}); the "
                "candidates per class were too few: raise generation.budget or lower selection.s",
                DataWarning,
                stacklevel=2,
            )
        return short
