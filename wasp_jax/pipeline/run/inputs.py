"""A run's immutable inputs: config, method, task, keys, meshes, and its lazily loaded models
and data (`Loaders`).

`open_run` builds them for a workdir together with the typed `RunState` (fresh, or restored
from the checkpoint after checking that the inputs are unchanged). Nothing here changes the
state: stages read `RunInputs` and the state and return typed results
(`wasp_jax.pipeline.run.results`) that the runner commits (`wasp_jax.pipeline.run.commit`).
The loaders memoise what they load (a model is loaded once, on first use, so a finished
stage costs nothing); the private data they load stays in memory and is never written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import pathlib
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
from wasp_jax.pipeline.run.private import load_private
from wasp_jax.pipeline.run.secret import shared_secret
from wasp_jax.pipeline.run.spread import checkpoint, vote_mesh
from wasp_jax.pipeline.run.state import RunState
from wasp_jax.pipeline.run.workdir import private_dir, release_dir
from wasp_jax.privacy.ledger import RunLedger
from wasp_jax.privacy.noise_source import NoiseSource
from wasp_jax.privacy.plan import PrivacyPlan
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


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What a run reads and never changes (see the module docstring).

    Attributes:
      cfg: the resolved config; method: its plug-in (`wasp_jax.pipeline.methods`).
      task: the task spec; workdir, release, private_dir: the workdir and its two parts.
      writer: whether this process writes the workdir (process 0).
      plan: the privacy plan (None: the method releases nothing about private data).
      noise: the run's DP noise source (secret-keyed); gen_root: the generation key.
      mesh, vote_mesh: the device meshes of the models and of the vote.
      plm_names: the PLMs (or replayed pools) in order.
      ckpt: the checkpoint, where a vote stage persists its release before reading it.
      models: the lazily loaded models and data.
      hooks: test and extension points.
    """

    cfg: WaspConfig
    method: object
    task: TaskSpec
    workdir: pathlib.Path
    release: pathlib.Path
    private_dir: pathlib.Path
    writer: bool
    plan: PrivacyPlan | None
    noise: NoiseSource
    gen_root: object
    mesh: object
    vote_mesh: object
    plm_names: tuple[str, ...]
    ckpt: Checkpoint
    models: Loaders
    hooks: Hooks


def open_run(cfg: WaspConfig, method, workdir: pathlib.Path, hooks: Hooks):
    """The run's inputs and its state (restored from the checkpoint, or new)."""
    task = load_task(cfg.task)
    ckpt = checkpoint(workdir)
    plan = method.privacy_plan(cfg)
    mesh = mesh_for(cfg.runtime.mesh)
    plm_names = tuple(method.plm_names(cfg))
    saved = ckpt.load()
    secret = shared_secret(private_dir(workdir), must_exist=saved is not None)
    fingerprints = input_fingerprints(
        cfg, task, secret, reads_private=method.reads_private_data, pools=method.replays(cfg)
    )
    if saved is not None:
        check_unchanged(saved.fingerprints, fingerprints, f"the run in {workdir}")
    state = saved or RunState(
        ledger=RunLedger.new(
            plan,
            method=cfg.method,
            adjacency=cfg.privacy.adjacency,
            num_parties=cfg.data.num_parties,
            num_histograms=cfg.num_histograms,
        ),
        fingerprints=fingerprints,
    )
    emb = ckpt.load_array("syn_emb")
    state.embeddings = None if emb is None else emb[: state.n_embedded]
    state.sample_weights = ckpt.load_array("sample_weights")
    inputs = RunInputs(
        cfg=cfg,
        method=method,
        task=task,
        workdir=workdir,
        release=release_dir(workdir),
        private_dir=private_dir(workdir),
        writer=dist.is_writer(),
        plan=plan,
        noise=run_noise(cfg, secret),  # secret-keyed; seeded only under privacy.noise="seeded"
        gen_root=generation_root(cfg.seed),
        mesh=mesh,
        vote_mesh=vote_mesh(mesh),
        plm_names=plm_names,
        ckpt=ckpt,
        models=Loaders(cfg, task, plm_names, hooks, mesh, private_dir(workdir), _usage(state)),
        hooks=hooks,
    )
    return inputs, state


def _usage(state: RunState) -> dict:
    """The API usage of the saved rounds and of the open one."""
    prior = {}
    rows = [m.get("api_usage") or {} for m in state.metrics]
    for usage in [*rows, state.current.api_usage]:
        for part in usage.values():
            api_plm.add_usage(prior, part)
    return prior


class Loaders:
    """The run's models and data, each loaded on first use and then kept."""

    def __init__(self, cfg, task, plm_names, hooks, mesh, private_path, prior_usage):
        self.cfg, self.task, self.plm_names, self.hooks = cfg, task, plm_names, hooks
        self.mesh, self.private_dir, self._prior_usage = mesh, private_path, prior_usage
        self.writer = dist.is_writer()
        self._generators: dict[int, object] = {}
        self._api_spend = None
        self._embedder = None
        self._private = None
        self._pools = None

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
            self._api_spend = api_plm.Spend(api_plm.limits_of(self.cfg.api), self._prior_usage)
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
            texts, labels, party = load_private(cfg.data, self.task, seed=cfg.seed)
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
