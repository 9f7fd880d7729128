"""A local generator's layer weights, stacked for training and merged back for sampling.

The generator keeps one array per layer (q, k and v fused on a single-device model axis).
Training reads them stacked (name -> [L, ...], unfused) so the forward pass is one
``lax.scan``; after training the adapters are merged in and the generator's per-layer arrays
are replaced, in the shardings they had, so its compiled samplers are reused as they are.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from wasp_jax.models import layers, lora


def not_tunable(gen) -> str | None:
    """Why `gen` cannot be tuned here (None when it can)."""
    if not hasattr(gen, "layers") or not hasattr(gen, "graphdef"):
        name = getattr(gen, "name", gen)
        return f"{name!r} is not a local model (API PLMs keep prompt-only selection)"
    if getattr(gen, "seq2seq", False):
        return f"{gen.name!r} is an encoder-decoder; its adapters are not supported yet"
    if not gen.layers:
        return f"{gen.name!r} holds no per-layer weights"
    return None


def _fused(gen) -> bool:
    return "wqkv" in gen.layers[0]


def stacked(gen) -> dict[str, jax.Array]:
    """The generator's current layer weights, unfused and stacked on a leading layer axis,
    each sharded as its per-layer array (the layer axis unsplit)."""
    c = gen.config
    per = [
        layers.unfuse_projections(p, c.num_heads, c.num_kv_heads, c.head_dim) for p in gen.layers
    ]
    out = {}
    for name in per[0]:
        sh = gen.layer_shardings[0].get(name)
        spec = () if sh is None or _fused(gen) else tuple(sh.spec)
        target = NamedSharding(gen.mesh, PartitionSpec(None, *spec))
        out[name] = jax.device_put(jnp.stack([p[name] for p in per]), target)
    return out


def set_stacked(gen, weights: dict[str, jax.Array]) -> None:
    """Replaces the generator's per-layer weights by `weights` (stacked, unfused)."""
    num_layers = next(iter(weights.values())).shape[0]
    per = [{n: w[i] for n, w in weights.items()} for i in range(num_layers)]
    if _fused(gen):
        per = [layers.fuse_projections(p) for p in per]
    gen.layers = [
        {n: jax.device_put(v, gen.layer_shardings[i][n]) for n, v in p.items()}
        for i, p in enumerate(per)
    ]


def merge_into(gen, adapters, scale: float) -> None:
    """Adds trained adapters into the generator's weights (later samples use them)."""
    set_stacked(gen, lora.merge(stacked(gen), adapters, scale))


def remember_base(gen) -> None:
    """Keeps the generator's untuned per-layer weights (once) for `untuned`."""
    if getattr(gen, "base_layers", None) is None:
        gen.base_layers = list(gen.layers)


@contextlib.contextmanager
def untuned(gen):
    """Inside the block the generator samples with its untuned weights (a no-op for a
    generator never tuned)."""
    base = getattr(gen, "base_layers", None)
    if base is None:
        yield gen
        return
    tuned, gen.layers = gen.layers, list(base)
    try:
        yield gen
    finally:
        gen.layers = tuned
