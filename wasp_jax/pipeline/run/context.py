"""One run's context: config, task, keys, lazily loaded models and data, and the typed state.

`RunContext.stage` wraps every stage: it skips a finished one, times it, and commits it:
`release/privacy.json` first, then the checkpoint (`private/checkpoint/`: the stage's arrays,
then `state.json`), then the other outputs (`release/`). A crash between two of these writes
can leave a ledger that is ahead of the checkpoint, never one that is behind it. A vote stage
persists its noisy release before anything reads it, and a resumed stage reuses that file: a
release is drawn once, whatever the resumed process computes from the private data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import pathlib
import time
from collections.abc import Callable

import numpy as np

from wasp_jax import data as data_io
from wasp_jax import distributed as dist
from wasp_jax.config import WaspConfig
from wasp_jax.errors import UsageError
from wasp_jax.models import api as api_plm
from wasp_jax.models.embedder import load_embedder
from wasp_jax.models.generator import load_generator
from wasp_jax.models.sharding import make_mesh
from wasp_jax.pipeline.run.checkpoint import Checkpoint
from wasp_jax.pipeline.run.fingerprint import check_unchanged, input_fingerprints
from wasp_jax.pipeline.run.keys import generation_root, run_noise
from wasp_jax.pipeline.run.population import Population
from wasp_jax.pipeline.run.private import load_private
from wasp_jax.pipeline.run.secret import shared_secret
from wasp_jax.pipeline.run.spread import checkpoint, vote_mesh
from wasp_jax.pipeline.run.state import RunState
from wasp_jax.pipeline.run.workdir import private_dir, release_dir
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


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ModelLoadError(UsageError):
    """A configured model cannot be loaded (CLI exit code 2)."""


@contextlib.contextmanager
def _load_errors(key: str, spec: str):
    """Turns a loader's failure on a bad checkpoint into one `ModelLoadError` line."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # a full disk: reported as such by the caller
        raise ModelLoadError(
            f"{key}: cannot load {spec!r}: {err}; give a registry name, a .gguf file or a "
            "Hugging Face model folder"
        ) from None
    except (ValueError, KeyError, IndexError, UnicodeDecodeError) as err:
        raise ModelLoadError(
            f"{key}: cannot load {spec!r} ({type(err).__name__}: {err}); give a registry "
            "name, a .gguf file or a Hugging Face model folder"
        ) from None


def mesh_for(choice: str):
    """The device mesh of `runtime.mesh`: None ("none") or one over all devices ("auto")."""
    return None if choice == "none" else make_mesh()


class RunContext:
    """One run's mutable context; see the module docstring."""

    def __init__(self, cfg: WaspConfig, workdir: pathlib.Path, hooks: Hooks):
        self.cfg, self.workdir, self.hooks = cfg, workdir, hooks
        self.task: TaskSpec = load_task(cfg.task)
        self.writer = dist.is_writer()  # the one process that writes the workdir
        #: the shareable outputs (release/) and the private state (private/) of the workdir
        self.release, self.private_dir = release_dir(workdir), private_dir(workdir)
        self.ckpt: Checkpoint = checkpoint(workdir)
        self.plan = privacy_plan(cfg)
        self.gen_root = generation_root(cfg.seed)
        self.mesh = mesh_for(cfg.runtime.mesh)
        self.vote_mesh = vote_mesh(self.mesh)
        if cfg.is_replay:
            self.plm_names = [pathlib.Path(p).stem for p in cfg.replay.pools]
        else:
            self.plm_names = list(cfg.generation.plms)
        saved = self.ckpt.load()
        #: drawn from the OS CSPRNG on first start, kept in private/ (never logged or released)
        self.secret = shared_secret(self.private_dir, must_exist=saved is not None)
        #: the run's DP noise (secret-keyed; seeded only under privacy.noise = "seeded")
        self.noise = run_noise(cfg, self.secret)
        fingerprints = input_fingerprints(cfg, self.task, self.secret)
        if saved is not None:
            check_unchanged(saved.fingerprints, fingerprints, f"the run in {workdir}")
        self.state: RunState = saved or RunState(
            ledger=RunLedger.new(
                self.plan,
                method=cfg.method,
                adjacency=cfg.privacy.adjacency,
                num_parties=cfg.data.num_parties,
                num_histograms=cfg.num_histograms,
            ),
            fingerprints=fingerprints,
        )
        self.resumed = len(self.state.done)
        self._start_n, self._start_t = len(self.state.population), time.perf_counter()
        emb = self.ckpt.load_array("syn_emb")
        self.syn_emb = None if emb is None else emb[: self.state.n_embedded]
        #: WASP+: a training weight per synthetic row, written into synthetic.jsonl
        self.sample_weights = self.ckpt.load_array("sample_weights")
        self._generators: dict[int, object] = {}
        self._api_spend = None
        self._embedder = None
        self._private = None
        self._pools = None

    @property
    def pop(self) -> Population:
        return self.state.population

    # -- models and data (loaded on first use, so a finished stage costs nothing) ------------

    def preload(self) -> None:
        """Loads every model the unfinished stages need before any of them runs, so that a
        model that cannot be loaded stops the run at its start, not after generation."""
        cfg, T = self.cfg, self.cfg.generation.rounds
        if f"r{T}/close" in self.state.done:
            return
        if not cfg.is_replay:
            for k in range(len(self.plm_names)):
                self.generator(k)
        if T > 0 and cfg.method != "random_control" and f"r{T}/vote" not in self.state.done:
            self.embedder()

    def generator(self, k: int):
        if k not in self._generators:
            load = self.hooks.load_generator or load_generator
            rt = self.cfg.runtime
            log.info("loading PLM %s", self.plm_names[k])
            if api_plm.is_api_spec(self.plm_names[k]):
                self._generators[k] = api_plm.load_api_generator(
                    self.plm_names[k],
                    api=self.cfg.api,
                    cache_dir=self.cfg.generation.api_cache_dir or self.private_dir / "api_cache",
                    spend=self.api_spend(),
                )
                return self._generators[k]
            with _load_errors("generation.plms", self.plm_names[k]):
                self._generators[k] = load(
                    self.plm_names[k],
                    mesh=self.mesh,
                    cache_dir=rt.cache_dir or None,
                    chat=self.cfg.generation.chat,
                )
        return self._generators[k]

    def api_spend(self):
        """The run's API spending (shared by its API PLMs), counted from the saved rounds."""
        if self._api_spend is None:
            prior = {}
            rows = [m.get("api_usage") or {} for m in self.state.metrics]
            for usage in [*rows, self.state.current.api_usage]:
                for part in usage.values():
                    api_plm.add_usage(prior, part)
            self._api_spend = api_plm.Spend(api_plm.limits_of(self.cfg.api), prior)
        return self._api_spend

    def embedder(self):
        if self._embedder is None:
            load = self.hooks.load_embedder or load_embedder
            e = self.cfg.embedder
            log.info("loading embedder %s", e.name)
            extra = {} if e.precision == "auto" else {"precision": e.precision}
            with _load_errors("embedder.name", e.name):
                self._embedder = load(
                    e.name,
                    mesh=self.mesh,
                    cache_dir=self.cfg.runtime.cache_dir or None,
                    batch_size=e.batch_size,
                    cache_path=(
                        str(self.private_dir / "embed_cache")
                        if e.cache_synthetic and self.writer
                        else None
                    ),
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
        self.commit(arrays)
        if metric == "generate":
            self._log_progress()
        self._hook(name + ":done")

    def _log_progress(self) -> None:
        """Samples kept of the whole budget, and an ETA from this process's pace."""
        done, total = len(self.pop), self.cfg.generation.budget
        new, secs = done - self._start_n, time.perf_counter() - self._start_t
        eta = ""
        if 0 < new and done < total:
            eta = f", about {_duration((total - done) * secs / new)} left"
        log.info("progress: %d of %d samples (%.0f%%)%s", done, total, 100 * done / total, eta)

    def commit(self, arrays: dict | None = None) -> None:
        """Ledger, then checkpoint, then the other outputs (see the module docstring)."""
        self.write_ledger()
        self.ckpt.save(self.state, arrays)
        self.write_outputs(ledger=False)

    def write_ledger(self) -> None:
        if not self.writer:
            return
        data_io.atomic_write_json(self.release / "privacy.json", self.state.ledger.report())

    def write_outputs(self, *, ledger: bool = True) -> None:
        if not self.writer:
            return
        if ledger:
            self.write_ledger()
        rows = self.pop.rows(self.task, self.plm_names)
        if self.sample_weights is not None and len(self.sample_weights) == len(rows):
            rows = [row | {"weight": float(w)} for row, w in zip(rows, self.sample_weights)]
        data_io.atomic_write_jsonl(self.release / "synthetic.jsonl", rows)
        data_io.atomic_write_jsonl(self.release / "metrics.jsonl", self.state.metrics)

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
                "filtered": dict(cur.filtered),
                **({"api_usage": cur.api_usage} if cur.api_usage else {}),
                "n_synthetic": len(self.pop),
            }
        )
        self.state.current = type(cur)()
        self.state.done.append(name)
        self.commit()
