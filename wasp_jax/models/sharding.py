"""Device mesh and named shardings for the models, their batches and KV caches (host side).

The single home of the package's mesh helpers. A model lives on one mesh with the axes
``("data", "model")``: parameters are split over ``"model"`` following a per-architecture
table (``SHARD_AXES`` of each model class: parameter name -> dimension), batches and
KV-cache rows over ``"data"``, KV heads over ``"model"``. Every spec falls back to
replication on a dimension that its mesh axis does not divide, so the same code runs on 1
CPU, 8 fake CPU devices, a GPU host or a TPU slice. Kernels never see axis names; only jit
boundaries do.

The mesh is built with `AxisType.Auto` axes: jax 0.10 defaults to explicit axes, under which
embedding gathers fail with a `ShardingTypeError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA = "data"
MODEL = "model"
AXES = (DATA, MODEL)


def make_mesh(
    data: int | None = None,
    model: int = 1,
    *,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """Builds a ``("data", "model")`` mesh with Auto axes.

    Args:
      data: size of the data axis; default ``len(devices) // model``.
      model: size of the model (tensor-parallel) axis.
      devices: devices to use. Default: all of this process's devices (``jax.local_devices()``;
        all devices in a single process) of the default backend, except on CPU,
        where XLA's host devices share the same cores (several exist only under
        ``--xla_force_host_platform_device_count``, a testing aid), so splitting one model
        over them costs more than it gives and the default is a single device.

    Returns:
      A `jax.sharding.Mesh` of shape ``(data, model)``.

    Raises:
      ValueError: if ``data * model`` differs from the number of devices.
    """
    if devices is None:
        devices = jax.local_devices()  # a model lives on this process's devices
        if devices[0].platform == "cpu" and data is None and model == 1:
            devices = devices[:1]
    devices = list(devices)
    if model < 1 or len(devices) % model:
        raise ValueError(
            f"model axis size {model} must divide the number of devices ({len(devices)})"
        )
    data = len(devices) // model if data is None else data
    if data * model != len(devices):
        raise ValueError(
            f"mesh shape ({data}, {model}) needs {data * model} devices, got {len(devices)}; "
            "pass devices=... or change data/model"
        )
    return jax.make_mesh(
        (data, model), AXES, axis_types=(AxisType.Auto, AxisType.Auto), devices=devices
    )


def single_device_mesh(device: jax.Device | None = None) -> Mesh:
    """A 1x1 mesh on `device` (default: this process's first device)."""
    return make_mesh(1, 1, devices=[device or jax.local_devices()[0]])


def to_host(x) -> np.ndarray:
    """A NumPy copy of `x`, also of an array split over several processes' devices (then
    every process gathers the whole array; all of them must call this together)."""
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def axis_size(mesh: Mesh | None, axis: str) -> int:
    """Size of `axis` in `mesh` (1 if the mesh lacks it, or without a mesh)."""
    if mesh is None:
        return 1
    return int(mesh.shape.get(axis, 1))


def _axis_if_divides(mesh: Mesh, axis: str, dim: int) -> str | None:
    size = axis_size(mesh, axis)
    return axis if size > 1 and dim % size == 0 else None


def replicated(mesh: Mesh) -> NamedSharding:
    """Fully replicated sharding on `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, shape: Sequence[int]) -> NamedSharding:
    """Leading (batch) dimension over ``"data"`` when it divides, the rest replicated."""
    if not shape:
        return replicated(mesh)
    return NamedSharding(mesh, PartitionSpec(_axis_if_divides(mesh, DATA, shape[0])))


def cache_sharding(mesh: Mesh, shape: Sequence[int]) -> NamedSharding:
    """Sharding of one KV-cache array ``[L, B, S, Hkv, Dh]``.

    B goes over ``"data"`` and Hkv over ``"model"``, each only when the axis divides it.
    """
    if len(shape) != 5:
        raise ValueError(f"KV cache arrays are [L, B, S, Hkv, Dh]; got shape {tuple(shape)}")
    _, b, _, hkv, _ = shape
    return NamedSharding(
        mesh,
        PartitionSpec(
            None, _axis_if_divides(mesh, DATA, b), None, _axis_if_divides(mesh, MODEL, hkv), None
        ),
    )


def fit_spec(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
    """Drops mesh axes from `spec` on the dimensions of `shape` they do not divide."""
    fitted = []
    for i, entry in enumerate(tuple(spec)):
        if entry is None or i >= len(shape):
            fitted.append(None if i >= len(shape) else entry)
            continue
        names = entry if isinstance(entry, tuple) else (entry,)
        size = int(np.prod([axis_size(mesh, n) for n in names]))
        fitted.append(entry if shape[i] % size == 0 else None)
    return PartitionSpec(*fitted[: len(shape)])


def axis_specs(state: nnx.State, mesh: Mesh | None, shard_axes: Mapping[str, int]) -> nnx.State:
    """PartitionSpecs for a parameter state (same structure, ``PartitionSpec`` leaves).

    A stacked layer weight (under ``layers``) named in `shard_axes` is split over
    ``"model"`` on the dimension given there; everything else (embeddings, norms, heads)
    is replicated, and so is a dimension that the ``"model"`` axis size does not divide
    (e.g. SmolLM2's 3 KV heads on 4 devices). Without a ``"model"`` axis everything is
    replicated.
    """
    n = axis_size(mesh, MODEL)

    def spec(path, x):
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        axis = shard_axes.get(keys[-1]) if "layers" in keys else None
        if axis is None or n == 1 or x.shape[axis] % n:
            return PartitionSpec()
        parts = [None] * len(x.shape)
        parts[axis] = MODEL
        return PartitionSpec(*parts)

    specs = jax.tree_util.tree_map_with_path(spec, state.to_pure_dict())
    out = jax.tree.map(lambda x: x, state)
    nnx.replace_by_pure_dict(out, specs)
    return out


def param_shardings(
    model_or_state: Any, mesh: Mesh, shard_axes: Mapping[str, int] | None = None
) -> nnx.State:
    """NamedShardings for a model's parameters, by :func:`axis_specs`.

    Args:
      model_or_state: an NNX module, or its ``nnx.State`` (then `shard_axes` is needed).
      mesh: the target mesh.
      shard_axes: parameter name -> dimension split over ``"model"``; default: the
        module class's ``SHARD_AXES``.

    Returns:
      A pytree shaped like ``nnx.state(model)`` with ``NamedSharding`` leaves. Specs are
      re-checked against the actual shapes, so a spec that does not divide a dimension
      replicates it instead of failing at `device_put`.
    """
    if isinstance(model_or_state, nnx.State):
        state = model_or_state
        if shard_axes is None:
            raise TypeError("param_shardings(state, mesh) needs shard_axes")
    else:
        state = nnx.state(model_or_state)
        shard_axes = type(model_or_state).SHARD_AXES if shard_axes is None else shard_axes
    specs = axis_specs(state, mesh, shard_axes)
    return jax.tree.map(
        lambda spec, x: NamedSharding(mesh, fit_spec(spec, np.shape(x), mesh)),
        specs,
        state,
        is_leaf=lambda s: isinstance(s, PartitionSpec),
    )


def shard_model(model, mesh: Mesh, shard_axes: Mapping[str, int] | None = None):
    """Splits an NNX model into (graphdef, state) with the state placed on `mesh`.

    `shard_axes` as in :func:`param_shardings` (default: the model class's table).

    Returns:
      ``(graphdef, state, shardings)``: the static graph, the device-put parameter state and
      the matching pytree of NamedShardings (for jit ``in_shardings``).
    """
    graphdef, state = nnx.split(model)
    shardings = param_shardings(model, mesh, shard_axes)
    state = jax.device_put(state, shardings)
    return graphdef, state, shardings


def unstack_layers(state: nnx.State, shardings: nnx.State, mesh: Mesh):
    """Moves a model's stacked layer weights into one separate array per layer (eagerly).

    The stacked ``[L, ...]`` arrays under ``layers`` are sliced once into per-layer arrays
    (placed with their stacked sharding minus the layer axis) and replaced in the state by
    empty placeholders, so the weights are held once. A model called with
    ``per_layer=...`` then never reads its stacked weights.

    Returns:
      ``(state, shardings, per_layer, per_layer_shardings)``: the state and shardings with
      placeholders, and lists (one dict per layer) of arrays and of their shardings.
    """
    stacked: dict[str, tuple[jax.Array, NamedSharding]] = {}
    rep = replicated(mesh)

    def is_layer(path):
        return bool(path) and getattr(path[0], "key", None) == "layers"

    def take(path, x, sh):
        if not is_layer(path):
            return x
        stacked[path[1].key] = (x, sh)
        return jax.device_put(jnp.zeros((0,), x.dtype), rep)

    rest = jax.tree_util.tree_map_with_path(take, state, shardings)
    rest_sh = jax.tree_util.tree_map_with_path(
        lambda path, sh: rep if is_layer(path) else sh, shardings
    )
    if not stacked:
        raise ValueError("the state has no stacked weights under 'layers'")
    num_layers = next(iter(stacked.values()))[0].shape[0]
    per_sh = {
        n: NamedSharding(mesh, PartitionSpec(*tuple(sh.spec)[1:])) for n, (_, sh) in stacked.items()
    }
    per_layer = [
        {n: jax.device_put(x[i], per_sh[n]) for n, (x, _) in stacked.items()}
        for i in range(num_layers)
    ]
    return rest, rest_sh, per_layer, [dict(per_sh) for _ in range(num_layers)]
