"""`run(config, workdir)`: a method's rounds, resumable, with their outputs (docs/method.md §2.0).

The runner is the same for every method; the method (a plug-in of `wasp_jax.pipeline.methods`)
supplies each stage's body. For WASP:

    D_k <- zero-shot samples of every PLM k (exact per-class quotas)        stage init/k
    for t = 1..T:
        votes  <- noise(Top-Q votes of the private set over D)            stage r<t>/vote
        G, B   <- per-class top-S good / bad;  a <- PLM allocation of dN
        D_k    <- D_k + generate(P_k, contrastive prompts(G, B), a_k)     stage r<t>/gen/k

After every stage the typed `RunState` (population, round plans, ledger, metrics) is
checkpointed (`wasp_jax.pipeline.run.checkpoint`), and re-running on the same workdir skips the
finished stages. Keys come from `wasp_jax.pipeline.run.keys`: no RNG state is saved and a resumed
run draws exactly what an uninterrupted one draws. The noisy votes of a round are computed
from the noise key of that round only, recorded in the ledger and saved in the same
checkpoint before use; a resume reuses them, so privacy is never spent twice.

Outputs in the workdir's shareable part, `release/` (all written atomically; only this folder
may be handed to others, `wasp_jax.pipeline.run.workdir`): `config.json` (resolved config),
`synthetic.jsonl` (text, label, label_name, plm, round; round 0 = zero-shot start),
`privacy.json` (the ledger), `method.json` (how the method describes itself),
`metrics.jsonl` (one object per round: round, plm_names,
plm_weights, plm_budgets, class_counts, stage_seconds, noisy_vote_summary (post-noise only),
selected (round's good/bad sample indices into synthetic.jsonl), shortfall, filtered (counts per
filter of `wasp_jax.pipeline.stages.filters`), n_synthetic),
then, with `eval.test_path`, the downstream evaluation of the synthetic set and its baselines
(`wasp_jax.pipeline.stages.evaluation`: eval.json, eval_baselines.json, zero_shot_start.jsonl;
with `eval.dp_classifiers`, two DP classifiers whose releases the ledger adds to the run's), and
`datasheet.md` / `report.md` (and `plots/`) from `wasp_jax.outputs`. The private part,
`private/` (mode 0700), holds the run's noise secret (`wasp_jax.pipeline.run.secret`), its
checkpoint and its caches; nothing there is ever released.

In a multi-process job (`wasp_jax.distributed`) every process runs this loop on the same
inputs (`wasp_jax.pipeline.run.spread` splits the work); process 0 alone holds the workdir lock
and writes the files above.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import time

import jax

from wasp_jax import data as data_io
from wasp_jax import distributed as dist
from wasp_jax.budget import split_evenly
from wasp_jax.config import WaspConfig
from wasp_jax.config.api import api_kind
from wasp_jax.errors import ConfigError
from wasp_jax.models.cache import cache_root
from wasp_jax.outputs import dataset_card, datasheet, report
from wasp_jax.pipeline.methods import resolve
from wasp_jax.pipeline.run import sizing, spread
from wasp_jax.pipeline.run.commit import Committer
from wasp_jax.pipeline.run.inputs import Hooks, RunInputs, open_run
from wasp_jax.pipeline.run.lock import WorkdirLockedError, workdir_lock
from wasp_jax.pipeline.run.state import RunState
from wasp_jax.pipeline.run.workdir import (
    WorkdirConfigError,
    check_writable,
    prepare_workdir,
    release_dir,
)
from wasp_jax.pipeline.stages import evaluation, generation
from wasp_jax.tasks import load_task

__all__ = ["Hooks", "RunResult", "WorkdirConfigError", "WorkdirLockedError", "run"]

log = logging.getLogger("wasp_jax")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Where a finished run's outputs are, and its headline numbers."""

    workdir: pathlib.Path
    n_synthetic: int
    epsilon_spent: float
    sigma: float | None
    resumed_stages: int
    seconds: float

    @property
    def release(self) -> pathlib.Path:
        """The shareable outputs: the only folder of the run that may be handed to others."""
        return release_dir(self.workdir)

    @property
    def synthetic_path(self) -> pathlib.Path:
        return self.release / "synthetic.jsonl"


def _enable_compile_cache(cache_dir: str) -> None:
    """Turns on JAX's persistent compilation cache unless the user configured one, or
    ``WASP_JAX_COMPILE_CACHE=0`` turns it off (the test suite does)."""
    if jax.config.jax_compilation_cache_dir or os.environ.get("WASP_JAX_COMPILE_CACHE") == "0":
        return
    path = cache_root(cache_dir or None) / "xla"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))


def _check_job(config: WaspConfig, method) -> None:
    """Refuses what a multi-process job does not do yet (API PLMs: their cache is per host)."""
    if not dist.is_multi() or method.replays(config):
        return
    remote = [p for p in config.generation.plms if api_kind(p)]
    if remote:
        raise ConfigError(
            f"generation.plms: API PLMs ({', '.join(remote)}) are not supported in a "
            "multi-process job; run a config with API PLMs in one process"
        )


def run(
    config: WaspConfig, workdir, *, force: bool = False, hooks: Hooks | None = None
) -> RunResult:
    """Runs (or resumes) `config` in `workdir` and writes the outputs listed in the module doc.

    Raises:
        ConfigError: the config does not suit its method (checked before anything is read).
        WorkdirLockedError: another run holds the workdir (nothing there is touched).
        WorkdirConfigError: the workdir holds a different config and `force` is False.
        wasp_jax.errors.DataError: unreadable or malformed data files.
    """
    method = resolve(config)
    need = method.first_vote_need(config)
    if need is not None:
        sizing.check_sizing(config, load_task(config.task).num_classes, need)
    _check_job(config, method)
    workdir = pathlib.Path(workdir)
    if not dist.is_writer():  # a multi-process run: process 0 holds the lock and writes
        return _run_locked(config, method, workdir, force=force, hooks=hooks)
    check_writable(workdir)
    with workdir_lock(workdir):
        return _run_locked(config, method, workdir, force=force, hooks=hooks)


def _run_locked(config, method, workdir: pathlib.Path, *, force: bool, hooks) -> RunResult:
    t_start = time.perf_counter()
    if dist.is_writer():
        prepare_workdir(config, workdir, force=force)
    dist.barrier("workdir ready")
    if config.runtime.compile_cache:
        _enable_compile_cache(config.runtime.cache_dir)
    inputs, state = open_run(config, method, workdir, hooks or Hooks())
    if inputs.writer:  # how the method describes itself (read by the datasheet)
        data_io.atomic_write_json(inputs.release / "method.json", method.describe(config))
    if inputs.plan is not None and inputs.plan.sigma == 0:
        log.warning(
            "privacy.epsilon is inf: the votes get no noise, so this run is NOT differentially "
            "private; its clean votes are kept in memory only, never written"
        )
    for line in generation.task_overrides(config.generation, inputs.task):
        log.info("%s", line)
    _preload(inputs, state)
    runner = Committer(inputs, state)
    _rounds(inputs, state, runner)
    spread.check_population("the final synthetic population", state.population)
    runner.write_outputs()
    _finish(inputs, state, runner)
    dist.barrier("run finished")
    ledger, n = state.ledger, len(state.population)
    log.info("done: %d synthetic samples, epsilon spent %.4g", n, ledger.epsilon_spent)
    if ledger.extra:
        log.info("with the evaluation's DP classifiers, epsilon total %.4g", ledger.epsilon_total)
    return RunResult(
        workdir=workdir,
        n_synthetic=n,
        epsilon_spent=float(ledger.epsilon_spent),
        sigma=None if ledger.plan is None else ledger.plan.sigma,
        resumed_stages=runner.resumed,
        seconds=time.perf_counter() - t_start,
    )


def _rounds(inputs: RunInputs, state: RunState, runner: Committer) -> None:
    """Round 0 (uniform over the PLMs), then rounds 1..T: decide, then draw per PLM."""
    cfg, method, K = inputs.cfg, inputs.method, len(inputs.plm_names)
    budgets = split_evenly(cfg.generation.initial_size, K)
    for k in range(K):
        runner.stage(
            f"init/{k}", "generate", lambda k=k: method.initial(inputs, state, k, budgets[k])
        )
    runner.close_round(0, [1.0 / K] * K, budgets, None, None)
    releases = inputs.plan is not None
    for t in range(1, cfg.generation.rounds + 1):
        runner.stage(
            f"r{t}/vote",
            "vote",
            lambda t=t: method.decide(inputs, state, t),
            releases_round=t if releases and method.releases_in_round(cfg, t) else None,
        )
        decision = state.decisions[t]
        for k in range(K):
            runner.stage(
                f"r{t}/gen/{k}", "generate", lambda t=t, k=k: method.draw(inputs, state, t, k)
            )
        runner.close_round(
            t, decision.weights, decision.budgets, decision.summary, decision.selected
        )
    if method.weights_rows(cfg):
        runner.stage("final/weights", "vote", lambda: method.row_weights(inputs, state))
    _equal_size_baseline(inputs, state, runner)


def _equal_size_baseline(inputs: RunInputs, state: RunState, runner: Committer) -> None:
    """With an evaluation and its baselines, the extra zero-shot rows (no privacy spent) that
    make the zero-shot baseline as large as the synthetic set: round 0 plus these rows."""
    cfg, K = inputs.cfg, len(inputs.plm_names)
    if not (cfg.eval.test_path and cfg.eval.baselines and cfg.generation.rounds > 0):
        return
    pop = state.population
    missing = len(pop) - sum(1 for r in pop.rounds if r == 0)
    if not inputs.method.draws_baseline(cfg):
        return
    for k, budget in enumerate(split_evenly(max(missing, 0), K)):
        if budget > 0:
            draw = lambda k=k, budget=budget: inputs.method.baseline_draw(inputs, state, k, budget)
            runner.stage(f"baseline/{k}", "generate", draw)


def _preload(inputs: RunInputs, state: RunState) -> None:
    """Loads every model the unfinished stages need before any of them runs, so that a model
    that cannot be loaded stops the run at its start, not after generation."""
    cfg, T = inputs.cfg, inputs.cfg.generation.rounds
    if f"r{T}/close" in state.done:
        return
    if not inputs.method.replays(cfg):
        for k in range(len(inputs.plm_names)):
            inputs.models.generator(k)
    if T > 0 and inputs.method.embeds(cfg) and f"r{T}/vote" not in state.done:
        inputs.models.embedder()


def _finish(inputs: RunInputs, state: RunState, runner: Committer) -> None:
    """The optional evaluation (with its baselines), then the datasheet and the report. The
    evaluation's DP classifiers (`eval.dp_classifiers`) are releases of their own: `runner`
    records them in the ledger and saves them in the checkpoint before they are used."""
    evaluation.evaluate_run(inputs, state, runner)  # every process: the STM trains data parallel
    if inputs.writer:
        datasheet.write_datasheet(inputs.release)
        dataset_card.write_card(inputs.release)
        report.write_report(inputs.release)
