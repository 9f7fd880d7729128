"""Fingerprints of a run's inputs, so that a resume notices when one of them changed.

A run records, in `checkpoint/state.json` only, one digest per input: the resolved config
(without the result-neutral `runtime.` keys), the task spec, the private data file, every
replay pool, and the source of every PLM and of the embedder. A resume recomputes them and
refuses to go on when one differs, naming what changed, because one privacy ledger must
cover one dataset and one synthetic set must come from one set of models.

The private data's digest is an HMAC-SHA256 of the file's bytes keyed with the run's secret
(`wasp_jax.pipeline.run.secret`), not a plain hash: without the secret nobody can test a guess of
the file against it (a plain SHA-256 would let someone who knows every record but one
confirm the missing one). It is the only value derived from private data that is stored
outside memory, and it lives only in the checkpoint, in the workdir's private part: no
released file (synthetic.jsonl, privacy.json, metrics.jsonl, the datasheet, the report)
carries it.

A model given as a path is fingerprinted by its files' names and sizes and the bytes of its
small files (configs, tokenizers) plus the first and last MiB of the large ones, which is
cheap on multi-GB checkpoints and catches a re-saved or swapped model; a registry name is
fingerprinted by the name and the version of the package that ships it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import importlib.metadata
import json
import os
import pathlib

from wasp_jax.config import WaspConfig
from wasp_jax.config.api import RESULT_NEUTRAL as API_RESULT_NEUTRAL
from wasp_jax.config.api import api_kind
from wasp_jax.errors import DataError
from wasp_jax.tasks import TaskSpec

#: Files up to this size are hashed whole; larger ones by their size, head and tail.
SMALL_FILE = 4 * 2**20
_EDGE = 2**20


class InputsChangedError(DataError):
    """A resumed run's inputs differ from those it started with (CLI exit code 2)."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_EDGE), b""):
            h.update(block)
    return h.hexdigest()


def keyed_file_digest(path: str | os.PathLike, key: bytes) -> str:
    """HMAC-SHA256 of a file's bytes under `key` (read in 1 MiB blocks)."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_EDGE), b""):
            h.update(block)
    return h.hexdigest()


def _sampled_digest(path: pathlib.Path) -> str:
    size = path.stat().st_size
    if size <= SMALL_FILE:
        return file_digest(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_EDGE))
        fh.seek(size - _EDGE)
        h.update(fh.read(_EDGE))
    return h.hexdigest()


def model_fingerprint(spec: str) -> str:
    """A PLM's or embedder's source: its files (a path) or its name and package version."""
    path = pathlib.Path(spec).expanduser()
    from wasp_jax.models import hub

    if hub.looks_like_hub_id(spec):
        with contextlib.suppress(ValueError):  # not cached: the loader says so in one line
            path = hub.snapshot(spec)
    if not path.exists():
        from wasp_jax.models import registry  # names only; imported when a name is used

        entries = {**registry.GGUF_REGISTRY, **registry.ENCODER_REGISTRY}
        version = ""
        if spec in entries:
            dist = entries[spec][2]
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = "absent"
            version = f" {dist}=={version}"
        return _sha(f"name:{spec}{version}".encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    parts = [
        f"{p.relative_to(path) if p != path else p.name}|{p.stat().st_size}|{_sampled_digest(p)}"
        for p in files
    ]
    return _sha("\n".join(parts).encode())


def config_fingerprint(cfg: WaspConfig) -> str:
    """Digest of the resolved config without its result-neutral values: the `runtime`
    section, the API caps, keys and the response cache folder (a run stopped by a cap
    resumes with a raised one), and the whole `api` section when no PLM is an API PLM."""
    d = cfg.to_dict()
    d.pop("runtime", None)
    for key, default in (("text_field", "text"), ("label_field", "")):  # default: as before
        if d["data"].get(key) == default:
            d["data"].pop(key)
    if not cfg.tune.enabled:  # off, its settings change nothing (and older runs stay resumable)
        d.pop("tune", None)
    d["generation"].pop("api_cache_dir", None)
    if any(api_kind(p) for p in cfg.generation.plms):
        for name in API_RESULT_NEUTRAL:
            d["api"].pop(name, None)
    else:
        d.pop("api", None)
    return _sha(json.dumps(d, sort_keys=True, default=str).encode())


def task_fingerprint(task: TaskSpec) -> str:
    return _sha(json.dumps(dataclasses.asdict(task), sort_keys=True, default=str).encode())


def input_fingerprints(
    cfg: WaspConfig, task: TaskSpec, secret: bytes, *, reads_private: bool, pools: bool
) -> dict[str, str]:
    """Input name (as a user would fix it) -> digest; the private data's is keyed with the
    run's `secret`. `reads_private`: the method reads the private data (and the embedder);
    `pools`: its candidates come from `replay.pools`, not from the PLMs. See the module
    docstring."""
    out = {"config": config_fingerprint(cfg), f"task {cfg.task!r}": task_fingerprint(task)}
    if reads_private and cfg.data.private_path:
        path = cfg.data.private_path
        out[f"private data {path!r}"] = keyed_file_digest(path, secret)
    if pools:
        for path in cfg.replay.pools:
            out[f"replay pool {path!r}"] = file_digest(path)
    else:
        for spec in cfg.generation.plms:
            out[f"PLM {spec!r}"] = model_fingerprint(spec)
    if reads_private:
        out[f"embedder {cfg.embedder.name!r}"] = model_fingerprint(cfg.embedder.name)
    return out


def check_unchanged(saved: dict[str, str], current: dict[str, str], where: str) -> None:
    """Refuses a resume whose inputs differ from the saved fingerprints.

    Raises:
      InputsChangedError: naming every changed input.
    """
    changed = [name for name in current if name in saved and saved[name] != current[name]]
    changed += [name for name in saved if name not in current]
    if changed:
        raise InputsChangedError(
            f"{where} was started with other inputs: {', '.join(changed)} changed since; "
            "restore them to resume, or pass --force to start the run afresh (its outputs are "
            "discarded), or choose another --workdir"
        )
