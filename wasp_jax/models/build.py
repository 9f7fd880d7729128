"""Decoder modules from a config: class lookup, parameter placement and random parameters.

``build_model`` makes a module from a ``DecoderConfig`` and a numpy parameter dict (or
random values for the tiny test models), placed on a mesh by ``partition_specs``: the
shared rules of `wasp_jax.models.sharding` applied to the architecture's ``SHARD_AXES``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wasp_jax.models import config as config_lib
from wasp_jax.models import sharding as shd
from wasp_jax.models.config import DecoderConfig
from wasp_jax.models.convert import UnsupportedModelError
from wasp_jax.models.gemma3 import Gemma3Model
from wasp_jax.models.gpt2 import GPT2Model
from wasp_jax.models.llama import LlamaModel
from wasp_jax.models.opt import OPTModel
from wasp_jax.models.t5 import T5Model

#: Architecture name -> NNX module class (`register_architecture` adds to it).
MODEL_CLASSES: dict[str, type[nnx.Module]] = {
    "llama": LlamaModel,
    "gemma3": Gemma3Model,
    "gpt2": GPT2Model,
    "opt": OPTModel,
    "t5": T5Model,
}


def model_class(arch: str) -> type[nnx.Module]:
    """The NNX module class of an architecture name."""
    if arch not in MODEL_CLASSES:
        known = ", ".join(MODEL_CLASSES)
        raise UnsupportedModelError(f"unknown arch {arch!r}; supported: {known}")
    return MODEL_CLASSES[arch]


def register_architecture(arch: str, cls: type[nnx.Module]) -> None:
    """Adds a decoder architecture: ``DecoderConfig(arch=arch, ...)`` then validates, and
    `build_model`, `load_causal_lm` (cached conversions) and the generator build `cls`.

    `cls` follows the decoder contract of `wasp_jax.models` (``__init__(config, *, rngs,
    dtype)``, ``init_cache``, ``__call__`` with ``prefix`` and ``per_layer``, stacked layer
    weights under ``layers``) and has a ``SHARD_AXES`` table. docs/extending_model.md has
    the recipe.

    Raises:
      ValueError: `arch` is already registered (built-in or not).
    """
    if arch in MODEL_CLASSES:
        raise ValueError(f"architecture {arch!r} is already registered")
    MODEL_CLASSES[arch] = cls
    config_lib._registered_archs.add(arch)


def unregister_architecture(arch: str) -> None:
    """Removes an architecture added by `register_architecture` (built-ins stay)."""
    if arch in config_lib.ARCHS or arch == "t5":
        raise ValueError(f"{arch!r} is a built-in architecture")
    MODEL_CLASSES.pop(arch, None)
    config_lib._registered_archs.discard(arch)


def partition_specs(model: nnx.Module, mesh: jax.sharding.Mesh | None) -> nnx.State:
    """PartitionSpecs for ``nnx.state(model)`` (same structure, ``PartitionSpec`` leaves).

    Attention head axes (q/k/v outputs, o_proj input) and the MLP hidden axis are split
    over the mesh axis ``"model"``; everything else (embedding, norms, head) is
    replicated. An axis whose size is not divisible by the "model" axis size (e.g.
    SmolLM2's 3 KV heads on 4 devices) falls back to replicated. Without a "model" axis
    everything is replicated. (Rules: `wasp_jax.models.sharding.axis_specs`.)
    """
    return shd.axis_specs(nnx.state(model), mesh, type(model).SHARD_AXES)


def shardings(model: nnx.Module, mesh: jax.sharding.Mesh | None) -> nnx.State | None:
    """NamedShardings of the model's parameters on `mesh` (None without a mesh)."""
    return None if mesh is None else shd.param_shardings(model, mesh)


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
    shard = shardings(model, mesh)
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
