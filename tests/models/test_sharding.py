"""Mesh and sharding helpers, and sharded generation equal to one device (8 fake CPU devices)."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from wasp_jax.models import generator as plm
from wasp_jax.models import sharding

needs_8 = pytest.mark.skipif(
    len(jax.devices()) < 8, reason="needs 8 devices (tests/conftest.py forces 8 fake CPU devices)"
)


def _mesh(shape):
    if shape == (1, 1):
        return sharding.single_device_mesh()
    return sharding.make_mesh(*shape, devices=jax.devices()[:8])


@functools.cache
def _loaded(name):
    from wasp_jax.models import load_causal_lm

    return load_causal_lm(name)


# -- meshes and specs -------------------------------------------------------------------------


def test_default_mesh_is_one_model_on_auto_axes():
    mesh = sharding.make_mesh()
    assert mesh.axis_names == ("data", "model")
    assert all(t == AxisType.Auto for t in mesh.axis_types)
    if jax.devices()[0].platform == "cpu":
        assert mesh.devices.size == 1  # fake CPU devices share the cores: no split by default
    else:
        assert mesh.devices.size == len(jax.devices())


@needs_8
@pytest.mark.parametrize("shape", [(2, 4), (8, 1), (1, 8)])
def test_make_mesh_shapes(shape):
    mesh = sharding.make_mesh(*shape, devices=jax.devices()[:8])
    assert tuple(mesh.shape.values()) == shape
    assert sharding.make_mesh(model=shape[1], devices=jax.devices()[:8]).shape == mesh.shape


@needs_8
def test_make_mesh_rejects_bad_shapes():
    with pytest.raises(ValueError, match="needs 4 devices"):
        sharding.make_mesh(2, 2, devices=jax.devices()[:8])
    with pytest.raises(ValueError, match="must divide"):
        sharding.make_mesh(model=3, devices=jax.devices()[:8])


@needs_8
def test_specs_shard_only_divisible_dims():
    mesh = _mesh((2, 4))
    assert sharding.batch_sharding(mesh, (6, 5)).spec == P("data")
    assert sharding.batch_sharding(mesh, (3, 5)).spec == P(None)
    assert sharding.cache_sharding(mesh, (2, 4, 64, 4, 16)).spec == P(
        None, "data", None, "model", None
    )
    assert sharding.cache_sharding(mesh, (2, 1, 64, 3, 16)).spec == P(None, None, None, None, None)
    assert sharding.fit_spec(P(None, "model"), (5, 6), mesh) == P(None, None)
    assert sharding.fit_spec(P(None, "model"), (5, 8), mesh) == P(None, "model")
    with pytest.raises(ValueError, match="L, B, S, Hkv, Dh"):
        sharding.cache_sharding(mesh, (4, 64))


@needs_8
def test_param_shardings_split_heads_over_model():
    from flax import nnx

    mesh = _mesh((2, 4))
    model = _loaded("tiny-llama").model
    graphdef, state, shardings = sharding.shard_model(model, mesh)
    flat = dict(nnx.to_flat_state(state))
    specs = {k: v.sharding.spec for k, v in flat.items()}
    wq = next(v for k, v in specs.items() if k[-1] == "wq")
    assert "model" in tuple(wq)
    embed = next(v for k, v in specs.items() if k[-1] == "embed")
    assert all(e is None for e in tuple(embed))
    # Values are unchanged by the placement.
    ref = dict(nnx.to_flat_state(nnx.state(model)))
    for k, v in flat.items():
        np.testing.assert_array_equal(np.asarray(v[...]), np.asarray(ref[k][...]))


# -- sharded generation equals one device -----------------------------------------------------


def _run(name, mesh_shape, **kw):
    gen = plm.Generator(_loaded(name), mesh=_mesh(mesh_shape))
    vocab = gen.config.vocab_size
    rng = np.random.default_rng(0)
    prompts = [[int(t) for t in rng.integers(3, min(vocab, 250), size=n)] for n in (4, 19, 41)]
    return gen.generate_ids(prompts, max_new_tokens=12, key=jax.random.key(2), **kw)


@functools.cache
def _one_device(name, greedy):
    kw = dict(temperature=0) if greedy else dict(num_samples=2, temperature=1.5, top_p=0.95)
    return _run(name, (1, 1), **kw), kw


@needs_8
@pytest.mark.parametrize(
    "name,mesh_shape,greedy",
    [
        ("tiny-llama", (2, 4), True),
        ("tiny-llama", (8, 1), True),
        ("tiny-gemma3", (2, 4), True),
        ("tiny-llama", (8, 1), False),
    ],
)
@pytest.mark.slow
def test_sharded_generation_equals_one_device(name, mesh_shape, greedy):
    ref, kw = _one_device(name, greedy)
    out = _run(name, mesh_shape, **kw)
    assert [[t.tolist() for t in r] for r in out.tokens] == [
        [t.tolist() for t in r] for r in ref.tokens
    ]
    for a, b in zip(out.logprobs, ref.logprobs):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=2e-4)
