"""One run's context: config, task, keys, lazily loaded models and data, and the typed state.

`RunContext.stage` wraps every stage: it skips a finished one, times it, and commits the
state (and the stage's arrays) to the checkpoint before the outputs are rewritten.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from collections.abc import Callable

import numpy as np

from wasp_jax import data as data_io
from wasp_jax.config import WaspConfig
from wasp_jax.models.embedder import load_embedder
from wasp_jax.models.generator import load_generator
from wasp_jax.models.sharding import make_mesh
from wasp_jax.pipeline.checkpoint import Checkpoint
from wasp_jax.pipeline.keys import streams
from wasp_jax.pipeline.population import Population
from wasp_jax.pipeline.private import load_private
from wasp_jax.pipeline.state import RunState
from wasp_jax.privacy.ledger import RunLedger
from wasp_jax.privacy.plan import privacy_plan
from wasp_jax.tasks import TaskSpec, load_task

log = logging.getLogger("wasp_jax")


@dataclasses.dataclass
class Hooks:
    """Test/extension points: model loaders and a callback around every stage.

    `on_stage(name)` is called with "<stage>:start" before a stage runs and "<stage>:done"
    after its checkpoint is saved; raising from it simulates a crash at that point.
    """

    load_generator: Callable | None = None
    load_embedder: Callable | None = None
    on_stage: Callable[[str], None] | None = None


def mesh_for(choice: str):
    """The device mesh of `runtime.mesh`: None ("none") or one over all devices ("auto")."""
    return None if choice == "none" else make_mesh()


class RunContext:
    """One run's mutable context; see the module docstring."""

    def __init__(self, cfg: WaspConfig, workdir: pathlib.Path, hooks: Hooks):
        self.cfg, self.workdir, self.hooks = cfg, workdir, hooks
        self.task: TaskSpec = load_task(cfg.task)
        self.ckpt = Checkpoint(workdir)
        self.plan = privacy_plan(cfg)
        self.gen_root, self.noise_root = streams(cfg.seed)
        self.mesh = mesh_for(cfg.runtime.mesh)
        if cfg.method == "replay":
            self.plm_names = [pathlib.Path(p).stem for p in cfg.replay.pools]
        else:
            self.plm_names = list(cfg.generation.plms)
        saved = self.ckpt.load()
        self.state: RunState = saved or RunState(
            ledger=RunLedger.new(
                self.plan,
                method=cfg.method,
                adjacency=cfg.privacy.adjacency,
                num_parties=cfg.data.num_parties,
                num_histograms=cfg.num_histograms,
            )
        )
        self.resumed = len(self.state.done)
        emb = self.ckpt.load_array("syn_emb")
        self.syn_emb = None if emb is None else emb[: self.state.n_embedded]
        self._generators: dict[int, object] = {}
        self._embedder = None
        self._private = None
        self._pools = None

    @property
    def pop(self) -> Population:
        return self.state.population

    # -- models and data (loaded on first use, so a finished stage costs nothing) ------------

    def generator(self, k: int):
        if k not in self._generators:
            load = self.hooks.load_generator or load_generator
            rt = self.cfg.runtime
            log.info("loading PLM %s", self.plm_names[k])
            self._generators[k] = load(
                self.plm_names[k],
                mesh=self.mesh,
                cache_dir=rt.cache_dir or None,
                chat=self.cfg.generation.chat,
            )
        return self._generators[k]

    def embedder(self):
        if self._embedder is None:
            load = self.hooks.load_embedder or load_embedder
            e = self.cfg.embedder
            log.info("loading embedder %s", e.name)
            extra = {} if e.precision == "auto" else {"precision": e.precision}
            self._embedder = load(
                e.name,
                mesh=self.mesh,
                cache_dir=self.cfg.runtime.cache_dir or None,
                batch_size=e.batch_size,
                cache_path=str(self.workdir / "embed_cache") if e.cache_synthetic else None,
                **extra,
            )
        return self._embedder

    def private(self):
        """(embeddings, labels, party) of the private set: in memory only, never saved."""
        if self._private is None:
            cfg = self.cfg
            texts, labels, party = load_private(
                cfg.data, self.task, seed=cfg.seed, method=cfg.method
            )
            emb = self.embedder().embed(texts, progress=cfg.runtime.progress)
            del texts
            self._private = (np.asarray(emb, np.float32), labels, party)
        return self._private

    def pools(self) -> list[list[list[str]]]:
        """replay: every pool's texts per class, in file order."""
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

    # -- stages and outputs ----------------------------------------------------------------

    def _hook(self, event: str) -> None:
        if self.hooks.on_stage:
            self.hooks.on_stage(event)

    def stage(self, name: str, metric: str, fn: Callable[[], dict | None]) -> None:
        """Runs stage `name` unless it is done, then commits it with the arrays it returns."""
        if name in self.state.done:
            return
        self._hook(name + ":start")
        t0 = time.perf_counter()
        arrays = fn() or {}
        secs = self.state.current.stage_seconds
        secs[metric] = secs.get(metric, 0.0) + time.perf_counter() - t0
        self.state.done.append(name)
        self.ckpt.save(self.state, arrays)
        self.write_outputs()
        self._hook(name + ":done")

    def write_outputs(self) -> None:
        data_io.atomic_write_jsonl(
            self.workdir / "synthetic.jsonl", self.pop.rows(self.task, self.plm_names)
        )
        data_io.atomic_write_jsonl(self.workdir / "metrics.jsonl", self.state.metrics)
        data_io.atomic_write_json(self.workdir / "privacy.json", self.state.ledger.report())

    def close_round(self, round_: int, weights, budgets, summary, selected) -> None:
        """Appends round `round_`'s metrics row (once) and commits it."""
        name = f"r{round_}/close"
        if name in self.state.done:
            return
        self._hook(name + ":start")
        cur = self.state.current
        self.state.metrics.append(
            {
                "round": round_,
                "plm_names": self.plm_names,
                "plm_weights": [float(w) for w in weights],
                "plm_budgets": [int(b) for b in budgets],
                "class_counts": self.pop.class_counts(self.task.num_classes),
                "stage_seconds": {k: round(v, 3) for k, v in cur.stage_seconds.items()},
                "noisy_vote_summary": summary,
                "selected": selected,
                "shortfall": cur.shortfall,
                "n_synthetic": len(self.pop),
            }
        )
        self.state.current = type(cur)()
        self.state.done.append(name)
        self.ckpt.save(self.state)
        self.write_outputs()
