"""The DP baselines a user compares WASP against, inside the vote-and-noise place.

Both read the private embeddings and return only noised values, with the run's noise
(``wasp_jax.privacy.noise_source``, discrete Gaussian on a lattice; docs/method.md §9.4):

* ``dp_centroid_classifier``: one release of the per-class sums of the private embeddings.
  Each embedding is clipped to norm 1 - step sqrt(d) / 2 and rounded to the grid ``step * Z^d``,
  so its norm stays <= 1 and the sums lie on the lattice: L2 sensitivity 1 under add/remove,
  2 under replace-one (a record moved within its class). A test text goes to the class whose
  noisy sum has the largest cosine with its embedding.
* ``dp_sgd_probe``: a linear probe (multinomial logistic regression) trained by noisy
  full-batch gradient descent: every step releases the sum over all private records of their
  loss gradients, each clipped to L2 norm ``clip`` and rounded to a grid as above, plus
  discrete Gaussian noise; Adam takes the noisy sum as is, so the exact number of private
  records is never used. The ``steps`` releases compose (RDP, the run's accountant) to
  (epsilon, delta); the sensitivity is ``clip`` (add/remove) or ``2 clip`` (replace-one).

Neither uses the exact private count: both consume only the noisy sums.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wasp_jax.kernels.noise import lattice_step
from wasp_jax.kernels.releases import clip_rows
from wasp_jax.privacy.accounting import calibrate_sigma
from wasp_jax.privacy.noise_source import NoiseSource
from wasp_jax.privacy.sensitivity import check_choice

#: Grid of the rounded embeddings and gradients (refined if sigma is small; see lattice_step).
GRID = 2.0**-10


def _adjacency_factor(adjacency: str) -> float:
    """Sensitivity of a sum of norm-<=1 contributions: 1 (add/remove), 2 (replace-one)."""
    check_choice("adjacency", adjacency, ("add_remove", "replace_one"))
    return 2.0 if adjacency == "replace_one" else 1.0


def centroid_noise(epsilon: float, delta: float, adjacency: str) -> tuple[float, float]:
    """(sigma, L2 sensitivity) of `dp_centroid_classifier`'s one release at (epsilon, delta)."""
    sens = _adjacency_factor(adjacency)
    sigma = calibrate_sigma(epsilon, delta, num_rounds=1, l2_sensitivity=sens, accountant="rdp")
    return float(sigma), sens


def sgd_probe_noise(
    epsilon: float, delta: float, adjacency: str, *, steps: int, clip: float
) -> tuple[float, float]:
    """(sigma, L2 sensitivity of one step) of `dp_sgd_probe`'s ``steps`` releases, which
    compose to (epsilon, delta)."""
    if clip <= 0 or steps < 1:
        raise ValueError(f"clip must be > 0 and steps >= 1, got {clip!r}, {steps!r}")
    sens = _adjacency_factor(adjacency) * clip
    sigma = calibrate_sigma(epsilon, delta, num_rounds=steps, l2_sensitivity=sens, accountant="rdp")
    return float(sigma), sens


def _grid_units(x, step):
    """Rows of x clipped to norm 1 - step sqrt(d) / 2, then rounded to int32 units of ``step``:
    the rounded rows have norm <= 1."""
    radius = 1.0 - step * math.sqrt(x.shape[-1]) / 2.0
    return jnp.round(clip_rows(x, radius) * (1.0 / step)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("num_classes", "step"))
def _noisy_sums(noise, x, y, *, num_classes, step):
    units = jax.ops.segment_sum(_grid_units(x, step), y, num_segments=num_classes)
    return (units + noise).astype(jnp.float32) * step


def dp_centroid_classifier(
    noise: NoiseSource,
    priv_emb,
    priv_label,
    *,
    num_classes: int,
    epsilon: float,
    delta: float,
    adjacency: str = "add_remove",
):
    """(noisy per-class sums (C, d), sigma): one discrete Gaussian release.

    Args:
      noise: the release's noise source (e.g. ``run_noise.child("centroid_baseline")``).
      priv_emb: (M, d) private embeddings; priv_label: (M,) int labels in [0, num_classes).
      epsilon, delta: the release's budget.
      adjacency: "add_remove" (sensitivity 1) or "replace_one" (2).
    """
    sigma, _ = centroid_noise(epsilon, delta, adjacency)
    x = np.asarray(priv_emb, np.float32)
    shape = (int(num_classes), x.shape[1])
    if sigma == 0:
        step, units = GRID, np.zeros(shape, np.int32)
    else:
        step = lattice_step(sigma, GRID)
        units = noise.lattice_noise(shape, scale=sigma / step)
    out = _noisy_sums(units, x, np.asarray(priv_label, np.int32), num_classes=shape[0], step=step)
    return np.asarray(out), float(sigma)


def centroid_predict(noisy_sums, features) -> np.ndarray:
    """Class of the largest cosine between each feature row and the noisy class sums."""
    c = np.asarray(noisy_sums, np.float64)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return (np.asarray(features, np.float64) @ c.T).argmax(1)


def _ce(params, x, y):
    kernel, bias = params
    return optax.softmax_cross_entropy_with_integer_labels(x @ kernel + bias, y)


def clipped_grad_units(params, x, y, clip, step):
    """Sum over the records of their loss gradients (flattened kernel then bias), each clipped
    to L2 norm ``clip`` and rounded to int32 units of ``step`` (norm still <= ``clip``)."""
    g = jax.vmap(jax.grad(_ce), in_axes=(None, 0, 0))(params, x, y)
    flat = jnp.concatenate([g[0].reshape(x.shape[0], -1), g[1]], axis=1)
    return _grid_units(flat * (1.0 / clip), step / clip).sum(axis=0)


@functools.partial(jax.jit, static_argnames=("num_classes", "step", "lr"))
def _train(noise, x, y, clip, l2, *, num_classes, step, lr):
    d = x.shape[1]
    params = (jnp.zeros((d, num_classes)), jnp.zeros(num_classes))
    opt = optax.adam(lr)
    state = opt.init(params)

    def one_step(carry, noise_t):
        params, state = carry
        total = (clipped_grad_units(params, x, y, clip, step) + noise_t) * step
        grad = (total[: d * num_classes].reshape(d, num_classes), total[d * num_classes :])
        grad = (grad[0] + l2 * params[0], grad[1])  # the public ridge term, after the noise
        updates, state = opt.update(grad, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(one_step, (params, state), noise)
    return params


def dp_sgd_probe(
    noise: NoiseSource,
    priv_emb,
    priv_label,
    *,
    num_classes: int,
    epsilon: float,
    delta: float,
    adjacency: str = "add_remove",
    steps: int = 40,
    clip: float = 1.0,
    lr: float = 0.05,
    l2: float = 1e-3,
):
    """(kernel (d, C), bias (C,), info) of a noisy-gradient linear probe on the private data.

    Every step releases the clipped gradient sum with discrete Gaussian noise of std sigma;
    ``info`` holds sigma, the noise multiplier sigma / sensitivity and the accountant.
    """
    sigma, sens = sgd_probe_noise(epsilon, delta, adjacency, steps=steps, clip=clip)
    x = clip_rows(jnp.asarray(priv_emb, jnp.float32))
    num_params = (x.shape[1] + 1) * int(num_classes)
    # a grid fine enough that rounding adds at most 5 % of clip to a gradient's norm
    grid = 2.0 ** math.floor(math.log2(0.1 * clip / math.sqrt(num_params)))
    if sigma == 0:
        step, units = grid, np.zeros((steps, num_params), np.int32)
    else:
        step = lattice_step(sigma, grid)
        units = noise.lattice_noise((steps, num_params), scale=sigma / step)
    kernel, bias = _train(
        units,
        x,
        jnp.asarray(priv_label, jnp.int32),
        float(clip),
        float(l2),
        num_classes=int(num_classes),
        step=step,
        lr=float(lr),
    )
    info = {
        "sigma": sigma,
        "noise_multiplier": sigma / sens,
        "accounting": "rdp",
        "steps": steps,
        "clip": clip,
        "lr": lr,
        "adjacency": adjacency,
    }
    return np.asarray(kernel), np.asarray(bias), info
