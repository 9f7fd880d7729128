"""The DP baselines a user compares WASP against, inside the vote-and-noise place.

Both read the private embeddings and return only noised values (docs/method.md §9.4):

* ``dp_centroid_classifier``: one Gaussian release of the per-class sums of the private
  embeddings (clipped to norm 1: sensitivity 1); a test text goes to the class whose noisy sum
  has the largest cosine with its embedding.
* ``dp_sgd_probe``: a linear probe (multinomial logistic regression) trained by DP-SGD:
  Poisson sampling, per-record gradients by ``vmap(grad)`` clipped to L2 norm ``clip``, their
  sum plus N(0, (z clip)^2), divided by the expected batch size; z from
  ``wasp_jax.privacy.dpsgd`` for the run's (epsilon, delta).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wasp_jax.kernels.releases import class_sums, clip_rows
from wasp_jax.privacy.accounting import calibrate_sigma
from wasp_jax.privacy.dpsgd import dpsgd_epsilon, dpsgd_noise_multiplier


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _noisy_sums(key, x, y, sigma, *, num_classes):
    clean = class_sums(x, y, num_classes=num_classes)
    return clean + sigma * jax.random.normal(key, clean.shape, clean.dtype)


def dp_centroid_classifier(noise_key, priv_emb, priv_label, *, num_classes, epsilon, delta):
    """(noisy per-class sums (C, d), sigma): one release with sensitivity 1."""
    sigma = calibrate_sigma(epsilon, delta, num_rounds=1, l2_sensitivity=1.0)
    x = np.asarray(priv_emb, np.float32)
    out = _noisy_sums(noise_key, x, np.asarray(priv_label, np.int32), np.float32(sigma),
                      num_classes=int(num_classes))  # fmt: skip
    return np.asarray(out), float(sigma)


def centroid_predict(noisy_sums, features) -> np.ndarray:
    """Class of the largest cosine between each feature row and the noisy class sums."""
    c = np.asarray(noisy_sums, np.float64)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return (np.asarray(features, np.float64) @ c.T).argmax(1)


def _loss(params, x, y, l2):
    kernel, bias = params
    ce = optax.softmax_cross_entropy_with_integer_labels(x @ kernel + bias, y)
    return ce + 0.5 * l2 * jnp.sum(kernel**2)


def clipped_grad_sum(params, x, y, take, clip, l2):
    """Sum over the sampled records (``take`` 0/1) of their gradients clipped to norm ``clip``:
    one record changes it by at most ``clip`` in L2 (add/remove)."""
    g = jax.vmap(jax.grad(_loss), in_axes=(None, 0, 0, None))(params, x, y, l2)
    flat = jnp.concatenate([g[0].reshape(x.shape[0], -1), g[1]], axis=1)
    scale = jnp.minimum(1.0, clip / jnp.maximum(jnp.linalg.norm(flat, axis=1), 1e-12))
    return jax.tree.map(lambda a: jnp.tensordot(take * scale, a, axes=1), g)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _train(key, x, y, z, rate, clip, lr, l2, *, num_classes, steps):
    d = x.shape[1]
    params = (jnp.zeros((d, num_classes)), jnp.zeros(num_classes))
    opt = optax.sgd(lr, momentum=0.9)
    state = opt.init(params)
    expected = rate * x.shape[0]

    def step(carry, k):
        params, state = carry
        k_sample, k_noise = jax.random.split(k)
        take = jax.random.bernoulli(k_sample, rate, (x.shape[0],)).astype(jnp.float32)
        summed = clipped_grad_sum(params, x, y, take, clip, l2)
        keys = jax.random.split(k_noise, 2)
        noisy = jax.tree.map(
            lambda s, kk: (s + z * clip * jax.random.normal(kk, s.shape)) / expected,
            summed,
            (keys[0], keys[1]),
        )
        updates, state = opt.update(noisy, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, state), jax.random.split(key, steps))
    return params


def dp_sgd_probe(
    noise_key,
    priv_emb,
    priv_label,
    *,
    num_classes: int,
    epsilon: float,
    delta: float,
    steps: int = 60,
    sampling_rate: float = 0.5,
    clip: float = 1.0,
    lr: float = 0.5,
    l2: float = 1e-3,
):
    """(kernel (d, C), bias (C,), info) of a DP-SGD linear probe on the private embeddings.

    Gradients are clipped per record (the clipped sum has L2 sensitivity ``clip`` under
    add/remove); ``info`` holds the noise multiplier and dp_accounting's epsilon.
    """
    z = dpsgd_noise_multiplier(epsilon, delta, sampling_rate=sampling_rate, steps=steps)
    x = clip_rows(jnp.asarray(priv_emb, jnp.float32))
    kernel, bias = _train(
        noise_key, x, jnp.asarray(priv_label, jnp.int32), z, sampling_rate, clip, lr, l2,
        num_classes=int(num_classes), steps=int(steps),
    )  # fmt: skip
    eps = dpsgd_epsilon(z, delta, sampling_rate=sampling_rate, steps=steps) if z > 0 else None
    info = {"noise_multiplier": z, "epsilon": eps, "steps": steps, "sampling_rate": sampling_rate,
            "clip": clip, "lr": lr}  # fmt: skip
    return np.asarray(kernel), np.asarray(bias), info
