"""The linear-probe small task model: logistic regression on frozen embeddings.

The fast STM of the CPU-scale tables (docs/method.md §3.1): features are standardised with
the training mean and std, then a softmax regression is fitted with full-batch Adam in one
jitted ``lax.scan`` that keeps the step with the lowest loss on a validation split of the
*training* features.

    probe, info = train_probe(train_x, train_y, num_classes=2, key=jax.random.key(0))
    pred = probe.predict(test_x)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wasp_jax.stm.finetune import host_rng, split_validation


@dataclasses.dataclass
class LinearProbe:
    """Logistic regression on standardised frozen embeddings: [n, d] -> [n, C] logits."""

    mean: np.ndarray
    scale: np.ndarray
    kernel: np.ndarray
    bias: np.ndarray

    def logits(self, features) -> np.ndarray:
        z = (np.asarray(features, np.float32) - self.mean) / self.scale
        return z @ self.kernel + self.bias

    def predict(self, features) -> np.ndarray:
        return self.logits(features).argmax(-1)


def _probe_fit(x, y, w, x_val, y_val, w_val, *, num_classes, steps, lr, l2):
    tx = optax.adam(lr)
    params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros(num_classes))

    def loss_fn(p, xs, ys, ws):
        ce = optax.softmax_cross_entropy_with_integer_labels(xs @ p[0] + p[1], ys)
        return jnp.sum(ce * ws) / jnp.sum(ws) + l2 * jnp.sum(jnp.square(p[0]))

    def step(carry, _):
        p, opt, best_p, best_loss = carry
        grads = jax.grad(loss_fn)(p, x, y, w)
        updates, opt = tx.update(grads, opt, p)
        p = optax.apply_updates(p, updates)
        val = loss_fn(p, x_val, y_val, w_val) if len(y_val) else 0.0
        better = val < best_loss
        best_p = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, best_p)
        return (p, opt, best_p, jnp.minimum(val, best_loss)), val

    init = (params, tx.init(params), params, jnp.inf)
    (p, _, best_p, _), val_curve = jax.lax.scan(step, init, None, length=steps)
    return (best_p if len(y_val) else p), val_curve


_probe_fit_jit = jax.jit(_probe_fit, static_argnames=("num_classes", "steps"))


def train_probe(
    features,
    labels,
    *,
    num_classes: int,
    key: jax.Array,
    weights=None,
    val_fraction: float = 0.1,
    steps: int = 300,
    learning_rate: float = 0.05,
    l2: float = 1e-4,
) -> tuple[LinearProbe, dict]:
    """Fits a linear probe with Adam (full batch, one jitted scan).

    The step with the lowest loss on a validation split of the *training* features is kept
    (early stopping inside the scan); ``val_fraction=0`` keeps the last step.

    Args:
      features: float [n, d] frozen embeddings of the training texts.
      labels: int [n] in [0, num_classes).
      key: PRNG key for the validation split.
      weights: optional per-sample loss weights.

    Returns:
      (probe, info) with "num_train", "num_val", "best_val_loss".
    """
    x = np.asarray(features, np.float32)
    y = np.asarray(labels, np.int32)
    w = np.ones(len(y), np.float32) if weights is None else np.asarray(weights, np.float32)
    if x.ndim != 2 or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"need features [n, d] and n labels, got {x.shape} and {y.shape}")
    tr, va = split_validation(len(y), val_fraction, host_rng(key))
    mean, scale = x[tr].mean(0), x[tr].std(0) + 1e-6
    z = (x - mean) / scale
    (kernel, bias), curve = _probe_fit_jit(
        z[tr], y[tr], w[tr], z[va], y[va], w[va], num_classes=num_classes, steps=steps,
        lr=learning_rate, l2=l2,
    )  # fmt: skip
    probe = LinearProbe(mean, scale, np.asarray(kernel), np.asarray(bias))
    best = float(np.min(curve)) if len(va) else float("nan")
    return probe, {"num_train": int(len(tr)), "num_val": int(len(va)), "best_val_loss": best}
