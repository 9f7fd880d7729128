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


def eta_seconds(stages, *, zero_left: int, voted_left: int) -> float | None:
    """Seconds of generation left, from the measured pace of each kind of row.

    `stages` holds ``(kind, rows, seconds)`` of every generate stage this process ran: kind
    "zero" (zero-shot: round 0 and the baseline's rows) or "voted" (rounds 1..T, whose
    contrastive prompts are several times longer). Each kind's rows left cost what that kind
    has cost per row so far (compile time included once, in the stage that paid it). Voted
    rows left before any voted stage was measured give None: round 0's pace would
    underestimate them, so no number is better than a wrong one.
    """
    rate = {}
    for kind in ("zero", "voted"):
        rows = sum(n for k, n, _ in stages if k == kind)
        if rows:
            rate[kind] = sum(sec for k, _, sec in stages if k == kind) / rows
    if voted_left and "voted" not in rate:
        return None
    if zero_left and "zero" not in rate and "voted" not in rate:
        return None
    zero_rate = rate.get("zero", rate.get("voted", 0.0))
    return voted_left * rate.get("voted", 0.0) + zero_left * zero_rate


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
        self._gen_log: list[tuple[str, int, float]] = []  # (kind, rows, seconds) per stage

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
        rows0 = len(self.state.population) + len(self.state.baseline)
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
            rows = len(self.state.population) + len(self.state.baseline) - rows0
            kind = "voted" if name.startswith("r") else "zero"  # r{t}/gen/k; init/, baseline/
            self._gen_log.append((kind, rows, time.perf_counter() - t0))
            self._log_progress()
        self._hook(name + ":done")

    def _log_progress(self) -> None:
        """Samples kept of the whole budget, and the generation time left (`eta_seconds`)."""
        cfg = self.inputs.cfg
        done, total = len(self.state.population), cfg.generation.budget
        n0 = min(cfg.generation.initial_size, total)
        baseline_left = 0
        if cfg.eval.test_path and cfg.eval.baselines and cfg.generation.rounds > 0:
            baseline_left = max(total - n0 - len(self.state.baseline), 0)
        left = eta_seconds(
            self._gen_log,
            zero_left=max(n0 - done, 0) + baseline_left,
            voted_left=max(total - max(done, n0), 0),
        )
        if left is None:
            eta = ", time left known once round 1 has started (its prompts are longer)"
        else:
            eta = f", about {_duration(left)} of generation left" if left > 0 else ""
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
