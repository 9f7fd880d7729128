"""Low-rank adapters (LoRA) on the decoders' per-layer weights.

A weight ``W`` whose first ``axes`` axes are its input (``layers.dense``'s contract) gets two
factors, ``A`` [in, r] and ``B`` [r, out] (``in``/``out`` the products of the input and
output axes), and the adapted product is ``x W + scale (x A) B`` with ``scale = alpha / r``.
``B`` starts at zero, so a fresh adapter leaves the model exactly as it was.

Two ways to run an adapted model, equal up to rounding:

* unmerged (training): the weight is wrapped in a `LoraWeight`, which ``layers.dense`` runs as
  the two products above; gradients flow to ``A`` and ``B`` only, and the frozen ``W`` is
  never copied;
* merged (generation): `merge` adds ``scale A B`` into ``W`` once, so sampling runs at the
  plain model's speed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

#: Weights whose input spans more than one leading axis (``wo`` [H, Dh, D]).
INPUT_AXES = {"wo": 2}
#: The projections an adapter may target (q/k/v/o of attention, the MLP's three).
TARGETABLE = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def input_axes(name: str) -> int:
    """How many leading axes of weight `name` are its input."""
    return INPUT_AXES.get(name, 1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LoraWeight:
    """A frozen weight with its adapter; ``layers.dense`` runs it unmerged.

    Attributes:
      base: the weight, its usual shape (a leading layer axis is allowed in stacked form).
      a: [..., in, r] down-projection.
      b: [..., r, out] up-projection.
      scale: ``alpha / r`` (static).
    """

    base: jax.Array
    a: jax.Array
    b: jax.Array
    scale: float = dataclasses.field(metadata=dict(static=True))


def adapter_shapes(weight_shape: Sequence[int], name: str, rank: int) -> tuple[tuple, tuple]:
    """Shapes of (A, B) for one per-layer weight of shape `weight_shape`."""
    axes = input_axes(name)
    fan_in = int(np.prod(weight_shape[:axes]))
    fan_out = int(np.prod(weight_shape[axes:]))
    return (fan_in, rank), (rank, fan_out)


def init_adapters(
    weights: Mapping[str, jax.Array], targets: Sequence[str], rank: int, key: jax.Array
) -> dict[str, dict[str, jax.Array]]:
    """Fresh adapters for stacked weights (name -> [L, ...]): A ~ N(0, 1/in), B = 0.

    Raises:
      ValueError: a target the model does not have, or a rank below 1.
    """
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    missing = [t for t in targets if t not in weights]
    if missing:
        raise ValueError(
            f"LoRA targets {missing} are not weights of this model; it has "
            f"{sorted(n for n in weights if n in TARGETABLE)}"
        )
    out = {}
    for i, name in enumerate(targets):
        w = weights[name]
        num_layers, shape = w.shape[0], w.shape[1:]
        (fan_in, r), (_, fan_out) = adapter_shapes(shape, name, rank)
        a = jax.random.normal(jax.random.fold_in(key, i), (num_layers, fan_in, r), jnp.float32)
        out[name] = {
            "a": a / np.sqrt(fan_in),
            "b": jnp.zeros((num_layers, r, fan_out), jnp.float32),
        }
    return out


def wrap(
    weights: Mapping[str, jax.Array], adapters: Mapping[str, Mapping[str, jax.Array]], scale: float
) -> dict[str, jax.Array | LoraWeight]:
    """The weights with each adapted one replaced by its `LoraWeight` (unmerged form)."""
    return {
        n: LoraWeight(w, adapters[n]["a"], adapters[n]["b"], scale) if n in adapters else w
        for n, w in weights.items()
    }


def delta(weight_shape: Sequence[int], a: jax.Array, b: jax.Array, scale: float) -> jax.Array:
    """``scale A B`` in the weight's own shape (per layer, or stacked with a layer axis)."""
    return (scale * (a @ b)).reshape(weight_shape)


def merge(
    weights: Mapping[str, jax.Array], adapters: Mapping[str, Mapping[str, jax.Array]], scale: float
) -> dict[str, jax.Array]:
    """The weights with each adapter added in (merged form), in the weights' dtype."""
    out = dict(weights)
    for n, ad in adapters.items():
        w = weights[n]
        out[n] = (w.astype(jnp.float32) + delta(w.shape, ad["a"], ad["b"], scale)).astype(w.dtype)
    return out


def dense_unmerged(x: jax.Array, w: LoraWeight, dense_fn, compute_dtype, axes: int) -> jax.Array:
    """``x W + scale (x A) B`` for one layer's `LoraWeight` (``layers.dense`` calls this)."""
    y = dense_fn(x, w.base, compute_dtype, axes)
    lead = x.shape[: x.ndim - axes]
    xa = x.reshape(-1, w.a.shape[-2]).astype(jnp.float32) @ w.a
    d = (xa @ w.b).reshape(*lead, *w.base.shape[axes:])
    return y + (w.scale * d).astype(y.dtype)
