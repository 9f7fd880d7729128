"""`run(config, workdir)`: the WASP loop, resumable, with its outputs (ALGORITHM 2.0).

    D_k <- zero-shot samples of every PLM k (exact per-class quotas)        stage init/k
    for t = 1..T:
        votes  <- noise(Top-Q votes of the private set over D)            stage r<t>/vote
        G, B   <- per-class top-S good / bad;  a <- PLM allocation of dN
        D_k    <- D_k + generate(P_k, contrastive prompts(G, B), a_k)     stage r<t>/gen/k

After every stage the state (population, round plans, ledger, metrics) is checkpointed
(`wasp_jax.checkpoint`), and re-running on the same workdir skips the finished stages.
Keys: `root = key(seed)` is split once into named streams (generation, DP noise); each stage
derives its keys with `fold_in(stream, round, plm, class)`, so no RNG state is saved and a
resumed run draws exactly what an uninterrupted one draws. The noisy votes of a round are
computed from the noise key of that round only, recorded in the ledger and saved in the same
checkpoint before use; a resume reuses them, so privacy is never spent twice.

Outputs in the workdir (all written atomically): `config.json` (resolved config),
`synthetic.jsonl` (text, label, label_name, plm, round; round 0 = zero-shot start),
`privacy.json` (the ledger), `metrics.jsonl` (one object per round: round, plm_names,
plm_weights, plm_budgets, class_counts, stage_seconds, noisy_vote_summary (post-noise only),
selected (round's good/bad sample indices into synthetic.jsonl), shortfall, n_synthetic),
then `datasheet.md` / `report.md` from `wasp_jax.report` and, with `eval.test_path`,
the downstream evaluation from `wasp_jax.evaluate`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np

from wasp_jax import checkpoint as ckpt_lib
from wasp_jax import data as data_io
from wasp_jax import ledger as ledger_lib
from wasp_jax import methods as M
from wasp_jax import rounds
from wasp_jax import stages as S
from wasp_jax.config import WaspConfig
from wasp_jax.tasks import TaskSpec, load_task

log = logging.getLogger("wasp_jax")


class WorkdirConfigError(data_io.DataError):
    """The workdir holds a run of a different config (CLI exit code 2; use --force)."""


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
    def synthetic_path(self) -> pathlib.Path:
        return self.workdir / "synthetic.jsonl"


@dataclasses.dataclass
class Hooks:
    """Test/extension points: model loaders and a callback around every stage.

    `on_stage(name)` is called with "<stage>:start" before a stage runs and "<stage>:done"
    after its checkpoint is saved; raising from it simulates a crash at that point.
    """

    load_generator: Callable | None = None
    load_embedder: Callable | None = None
    on_stage: Callable[[str], None] | None = None


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def _prepare_workdir(cfg: WaspConfig, workdir: pathlib.Path, force: bool) -> None:
    """Refuses a workdir holding another config (runtime.* does not count), unless `force`,
    which discards the run there; then writes the resolved config.json."""
    path = workdir / "config.json"
    if path.is_file() and not force:
        old, new = _flat(json.loads(path.read_text(encoding="utf-8"))), _flat(cfg.to_dict())
        diff = [k for k in sorted(new) if old.get(k) != new[k] and not k.startswith("runtime.")]
        if diff:
            raise WorkdirConfigError(
                f"workdir {str(workdir)!r} holds a run of a different config (differs in: "
                f"{', '.join(diff[:6])}); use another --workdir, or --force to start over there"
            )
    if force:
        ckpt_lib.Checkpoint(workdir).clear()
        for name in ("synthetic.jsonl", "privacy.json", "metrics.jsonl", "eval.json"):
            (workdir / name).unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    data_io.atomic_write_text(path, cfg.to_json() + "\n")


class _Run:
    """One run's mutable context: config, task, models (lazy), keys and the state dict."""

    def __init__(self, cfg: WaspConfig, workdir: pathlib.Path, hooks: Hooks):
        self.cfg, self.workdir, self.hooks = cfg, workdir, hooks
        self.task: TaskSpec = load_task(cfg.task)
        self.ckpt = ckpt_lib.Checkpoint(workdir)
        self.plan = M.privacy_plan(cfg)
        gen_root, noise_root = jax.random.split(jax.random.key(cfg.seed), 2)
        self.gen_root, self.noise_root = gen_root, noise_root
        if cfg.method == "replay":
            self.plm_names = [pathlib.Path(p).stem for p in cfg.replay.pools]
        else:
            self.plm_names = list(cfg.generation.plms)
        self.state = self.ckpt.load() or {
            "done": [],
            "population": S.Population().to_state(),
            "ledger": ledger_lib.new_ledger(self.plan, cfg),
            "plans": {},
            "metrics": [],
            "current": {},
            "pool_next": None,
            "n_embedded": 0,
        }
        self.resumed = len(self.state["done"])
        self.pop = S.Population.from_state(self.state["population"])
        emb = self.ckpt.load_array("syn_emb")
        self.syn_emb = None if emb is None else emb[: self.state["n_embedded"]]
        self._generators: dict[int, object] = {}
        self._embedder = None
        self._private = None
        self._pools = None

    # -- models and data (loaded on first use, so a finished stage costs nothing) ------------

    def generator(self, k: int):
        if k not in self._generators:
            load = self.hooks.load_generator
            if load is None:
                from wasp_jax.plm import load_generator as load
            rt = self.cfg.runtime
            log.info("loading PLM %s", self.plm_names[k])
            self._generators[k] = load(
                self.plm_names[k],
                mesh=_mesh(rt.mesh),
                cache_dir=rt.cache_dir or None,
                chat=self.cfg.generation.chat,
            )
        return self._generators[k]

    def embedder(self):
        if self._embedder is None:
            load = self.hooks.load_embedder
            if load is None:
                from wasp_jax.embed import load_embedder as load
            e = self.cfg.embedder
            log.info("loading embedder %s", e.name)
            self._embedder = load(
                e.name,
                mesh=_mesh(self.cfg.runtime.mesh),
                cache_dir=self.cfg.runtime.cache_dir or None,
                batch_size=e.batch_size,
                cache_path=str(self.workdir / "embed_cache") if e.cache_synthetic else None,
            )
        return self._embedder

    def private(self):
        """(embeddings, labels, party) of the private set: in memory only, never saved."""
        if self._private is None:
            texts, labels, party = S.load_private(self.cfg, self.task)
            emb = self.embedder().embed(texts, progress=self.cfg.runtime.progress)
            del texts
            self._private = (np.asarray(emb, np.float32), labels, party)
        return self._private

    def pools(self) -> list[list[list[str]]]:
        if self._pools is None:
            self._pools = []
            for path in self.cfg.replay.pools:
                rows = data_io.read_labeled_jsonl(
                    path,
                    label_names=self.task.labels,
                    what="candidate pool",
                    label_field=self.task.label_field,
                    label_offset=self.task.label_offset,
                )
                per_class = [[] for _ in self.task.labels]
                for r in rows:
                    per_class[r["label"]].append(r["text"])
                self._pools.append(per_class)
        return self._pools

    # -- the stage wrapper -----------------------------------------------------------------

    def stage(self, name: str, metric: str, fn: Callable[[], dict | None]) -> None:
        if name in self.state["done"]:
            return
        if self.hooks.on_stage:
            self.hooks.on_stage(name + ":start")
        t0 = time.perf_counter()
        arrays = fn() or {}
        secs = self.state["current"].setdefault("stage_seconds", {})
        secs[metric] = secs.get(metric, 0.0) + time.perf_counter() - t0
        self.state["done"].append(name)
        self.state["population"] = self.pop.to_state()
        self.ckpt.save(self.state, arrays)
        self.write_outputs()
        if self.hooks.on_stage:
            self.hooks.on_stage(name + ":done")

    # -- outputs -----------------------------------------------------------------------------

    def write_outputs(self) -> None:
        data_io.atomic_write_jsonl(
            self.workdir / "synthetic.jsonl", self.pop.rows(self.task, self.plm_names)
        )
        data_io.atomic_write_jsonl(self.workdir / "metrics.jsonl", self.state["metrics"])
        data_io.atomic_write_json(
            self.workdir / "privacy.json", ledger_lib.report(self.state["ledger"])
        )

    def close_round(self, round_: int, weights, budgets, summary, selected) -> None:
        """Appends round `round_`'s metrics row (once) and commits it."""
        name = f"r{round_}/close"
        if name in self.state["done"]:
            return
        if self.hooks.on_stage:
            self.hooks.on_stage(name + ":start")
        cur = self.state["current"]
        self.state["metrics"].append(
            {
                "round": round_,
                "plm_names": self.plm_names,
                "plm_weights": [float(w) for w in weights],
                "plm_budgets": [int(b) for b in budgets],
                "class_counts": self.pop.class_counts(self.task.num_classes),
                "stage_seconds": {k: round(v, 3) for k, v in cur.get("stage_seconds", {}).items()},
                "noisy_vote_summary": summary,
                "selected": selected,
                "shortfall": cur.get("shortfall", 0),
                "n_synthetic": len(self.pop),
            }
        )
        self.state["current"] = {}
        self.state["done"].append(name)
        self.ckpt.save(self.state)
        self.write_outputs()


def _enable_compile_cache(cache_dir: str) -> None:
    """Turns on JAX's persistent compilation cache unless the user configured one."""
    if jax.config.jax_compilation_cache_dir:
        return
    import os

    root = cache_dir or os.environ.get("WASP_JAX_CACHE") or "~/.cache/wasp_jax"
    path = pathlib.Path(root).expanduser() / "xla"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))


def _mesh(choice: str):
    if choice == "none":
        return None
    from wasp_jax import sharding

    return sharding.make_mesh()


def run(
    config: WaspConfig, workdir, *, force: bool = False, hooks: Hooks | None = None
) -> RunResult:
    """Runs (or resumes) `config` in `workdir` and writes the outputs listed in the module doc.

    Raises:
        WorkdirConfigError: the workdir holds a different config and `force` is False.
        wasp_jax.data.DataError: unreadable or malformed data files.
    """
    t_start = time.perf_counter()
    workdir = pathlib.Path(workdir)
    _prepare_workdir(config, workdir, force)
    if config.runtime.compile_cache:
        _enable_compile_cache(config.runtime.cache_dir)
    r = _Run(config, workdir, hooks or Hooks())
    K = len(r.plm_names)
    # round 0: zero-shot start (or the first pool rows), uniform over PLMs
    init_budgets = S.split_evenly(config.generation.initial_size, K)
    for k in range(K):
        r.stage(f"init/{k}", "generate", lambda k=k: rounds.initial(r, k, init_budgets[k]))
    r.close_round(0, [1.0 / K] * K, init_budgets, None, None)
    # rounds 1..T: DP vote -> selection + PLM allocation -> generation per PLM
    for t in range(1, config.generation.rounds + 1):
        r.stage(f"r{t}/vote", "vote", lambda t=t: rounds.vote(r, t))
        plan = r.state["plans"][str(t)]
        for k in range(K):
            r.stage(f"r{t}/gen/{k}", "generate", lambda t=t, k=k: rounds.generate(r, t, k))
        r.close_round(t, plan["weights"], plan["budgets"], plan["summary"], plan["selected"])
    r.write_outputs()
    _finish(r)
    led = ledger_lib.report(r.state["ledger"])
    log.info("done: %d synthetic samples, epsilon spent %s", len(r.pop), led["epsilon_spent"])
    return RunResult(
        workdir=workdir,
        n_synthetic=len(r.pop),
        epsilon_spent=float(led["epsilon_spent"]),
        sigma=led.get("sigma"),
        resumed_stages=r.resumed,
        seconds=time.perf_counter() - t_start,
    )


def _finish(r: _Run) -> None:
    """Datasheet, report and the optional evaluation; each skipped with a log line if absent."""
    try:
        from wasp_jax import report
    except ImportError:
        log.info("wasp_jax.report is not available; skipping datasheet.md and report.md")
        report = None
    if r.cfg.eval.test_path:
        try:
            from wasp_jax.evaluate import evaluate_files
        except ImportError:
            log.warning("eval.test_path is set but wasp_jax.evaluate is missing; no evaluation")
        else:
            log.info(
                "evaluating the synthetic data on %s (%s)", r.cfg.eval.test_path, r.cfg.eval.mode
            )
            evaluate_files(
                r.workdir / "synthetic.jsonl",
                r.cfg.eval.test_path,
                mode=r.cfg.eval.mode,
                seeds=list(r.cfg.eval.seeds),
                max_test=r.cfg.eval.max_test or None,
                out=r.workdir / "eval.json",
                cache_dir=r.cfg.runtime.cache_dir or None,
                progress=r.cfg.runtime.progress,
            )
    if report is not None:
        report.write_datasheet(r.workdir)
        report.write_report(r.workdir)
