"""Fine-tuning the small task model with Optax (docs/method.md §3.1).

AdamW with linear warm-up/decay and gradient clipping, per-sample weights in the loss,
length-bucketed batches, one jitted train step with donated state, and early stopping on a
validation split of the *training* (synthetic) data that restores the best weights. With a
mesh, batches are split over ``"data"``.

    clf, info = train_classifier(texts, labels, num_classes=2, key=jax.random.key(0))
    pred = clf.predict(test_texts)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from wasp_jax.errors import DataWarning
from wasp_jax.kernels.padding import length_bucket
from wasp_jax.models import sharding as shd
from wasp_jax.models.bert import bert_param_shardings
from wasp_jax.models.embedder import pad_batch, tokenize
from wasp_jax.stm.classifier import (
    Classifier,
    STMConfig,
    batched_logits,
    build_classifier,
    place_batch,
)

#: Below this many validation texts, early stopping and best-epoch restore follow noise.
MIN_RELIABLE_VAL = 20

_DEFAULT_CONFIG = STMConfig()  # frozen, so one shared default is safe


# ------------------------------------------------------------------ loss, optimizer, step


def weighted_loss(logits, labels, weights, valid):
    """Mean over real rows of ``weights * CE``: [B, C], [B], [B], [B] -> scalar.

    ``valid`` masks padding rows; with unit weights this is the plain mean cross-entropy.
    """
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    valid = valid.astype(ce.dtype)
    return jnp.sum(ce * weights * valid) / jnp.maximum(valid.sum(), 1.0)


def _decay_mask(params):
    # decay kernels and embedding tables, not biases or LayerNorm scales (the BERT recipe)
    def keep(path, _):
        name = next(str(e.key) for e in reversed(path) if hasattr(e, "key"))
        return name.endswith("kernel") or name.endswith("_emb")

    return jax.tree_util.tree_map_with_path(keep, params)


def learning_rate(step: int, *, peak: float, warmup: int, total: int) -> np.float32:
    """Linear warm-up over ``warmup`` steps to ``peak``, then linear decay to 0 at ``total``."""
    up = peak * (step + 1) / max(warmup, 1)
    down = peak * (total - step) / max(total - warmup, 1)
    return np.float32(max(0.0, min(up, down)))


@functools.cache
def make_optimizer(weight_decay: float, max_grad_norm: float) -> optax.GradientTransformation:
    """AdamW without its learning rate (applied per step in the train step), after clipping.

    Cached so that every run with the same settings reuses one compiled train step.
    """
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        optax.scale_by_adam(),
        optax.add_decayed_weights(weight_decay, mask=_decay_mask),
        optax.scale(-1.0),
    )


def _loss_fn(graphdef, params, ids, mask, labels, weights, valid, key):
    logits = nnx.merge(graphdef, params)(ids, mask, dropout_key=key)
    return weighted_loss(logits, labels, weights, valid)


def _train_step(graphdef, tx, params, opt_state, batch, lr, key, step):
    ids, mask, labels, weights, valid = batch
    key = None if key is None else jax.random.fold_in(key, step)
    loss, grads = jax.value_and_grad(_loss_fn, argnums=1)(
        graphdef, params, ids, mask, labels, weights, valid, key
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u: lr * u, updates)
    return optax.apply_updates(params, updates), opt_state, loss


# graphdef and optimizer are static; params and optimizer state are donated (updated in place)
train_step = jax.jit(_train_step, static_argnums=(0, 1), donate_argnums=(2, 3))


# -------------------------------------------------------------------- data on the host


def batch_order_rng(key: jax.Array) -> np.random.Generator:
    """The numpy generator of a PRNG key (head init, shuffling, validation split)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())


def split_validation(n: int, fraction: float, rng: np.random.Generator):
    """Random (train, validation) index split of range(n); validation empty if fraction is 0."""
    order = rng.permutation(n)
    n_val = 0 if fraction <= 0 or n < 4 else max(1, int(round(fraction * n)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _train_batches(lengths, batch_size, rng):
    # shuffle, then sort within pools of 50 batches by length, so batches share a bucket
    order = rng.permutation(len(lengths))
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _make_batch(ids, labels, weights, idx, rows, max_length, pad_id):
    # rows beyond len(idx) are padding: weight 0 and valid False, so they add nothing
    length = length_bucket(max(len(ids[i]) for i in idx), max_length)
    b_ids, b_mask = pad_batch([ids[i] for i in idx], length, rows, pad_id)
    extra = rows - len(idx)
    b_lab = np.concatenate([labels[idx], np.zeros(extra, np.int32)])
    b_w = np.concatenate([weights[idx], np.zeros(extra, np.float32)])
    return b_ids, b_mask, b_lab, b_w, np.arange(rows) < len(idx)


def _with_validation(texts, labels, weights, config, rng, val_texts, val_labels):
    """(texts, labels, weights, train_idx, val_idx) with the validation rows chosen.

    The split of ``texts`` is always drawn (so ``rng`` advances the same way); an explicit
    validation set replaces it and is appended after the training texts.
    """
    train_idx, val_idx = split_validation(len(texts), config.val_fraction, rng)
    if val_texts is not None:
        train_idx = np.arange(len(texts))
        texts, labels = list(texts) + list(val_texts), np.concatenate([labels, val_labels])
        weights = np.concatenate([weights, np.ones(len(val_texts), np.float32)])
        val_idx = np.arange(len(train_idx), len(texts))
    if 0 < len(val_idx) < MIN_RELIABLE_VAL:
        warnings.warn(
            f"the STM validation split holds only {len(val_idx)} texts, so early stopping and "
            "the best-epoch restore follow noise (a near-constant classifier can win); train on "
            f"more texts, raise val_fraction, or set val_fraction=0 to train all "
            f"{config.epochs} epochs",
            DataWarning,
            stacklevel=3,  # the caller of train_classifier
        )
    return texts, labels, weights, train_idx, val_idx


# ------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class _Fit:
    """What one fine-tuning run keeps fixed across epochs: host data and static step args."""

    clf: Classifier
    config: STMConfig
    graphdef: Any
    tx: optax.GradientTransformation
    texts: list[str]
    ids: list[list[int]]
    labels: np.ndarray
    weights: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    dropout_key: jax.Array | None
    rows: int  # padded batch rows, a multiple of the mesh's "data" size
    warmup: int
    total: int

    def epoch(self, params, opt_state, step: int, rng: np.random.Generator):
        """One pass over the training rows: (params, opt_state, step, mean train loss)."""
        cfg, pad, losses = self.config, self.clf.tokenizer.pad_token_id, []
        lengths = [len(self.ids[i]) for i in self.train_idx]
        for batch in _train_batches(lengths, cfg.batch_size, rng):
            arrays = _make_batch(
                self.ids,
                self.labels,
                self.weights,
                self.train_idx[batch],
                self.rows,
                cfg.max_length,
                pad,
            )
            lr = learning_rate(step, peak=cfg.learning_rate, warmup=self.warmup, total=self.total)
            params, opt_state, loss = train_step(
                self.graphdef,
                self.tx,
                params,
                opt_state,
                place_batch(arrays, self.clf.mesh),
                lr,
                self.dropout_key,
                step,
            )
            losses.append(loss)
            step += 1
        return params, opt_state, step, float(np.mean(jax.device_get(losses)))

    def validate(self, params) -> tuple[float, float]:
        """(weighted mean cross-entropy, accuracy) on the validation rows."""
        idx = self.val_idx
        texts = [self.texts[i] for i in idx]
        logits = batched_logits(
            self.graphdef, params, self.clf.tokenizer, texts, self.config, self.clf.mesh
        )
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, self.labels[idx])
        w_val = self.weights[idx] if self.weights[idx].sum() > 0 else None
        accuracy = float((logits.argmax(-1) == self.labels[idx]).mean())
        return float(np.average(ce, weights=w_val)), accuracy

    def run(self, params, rng: np.random.Generator, progress: bool):
        """Epochs with early stopping: (params, history, best_epoch, steps).

        Without validation rows every epoch runs and the last weights are kept. Otherwise the
        weights of the epoch with the lowest validation loss are copied to the host, training
        stops after ``patience`` epochs without improvement, and the best weights come back.
        """
        opt_state = self.tx.init(params)
        best = (np.inf, None, -1)
        history, bad, step = [], 0, 0
        for epoch in range(self.config.epochs):
            params, opt_state, step, train_loss = self.epoch(params, opt_state, step, rng)
            record = {"epoch": epoch + 1, "train_loss": train_loss}
            if len(self.val_idx):
                val_loss, val_accuracy = self.validate(params)
                record.update(val_loss=val_loss, val_accuracy=val_accuracy)
                if val_loss < best[0]:
                    # copy to host: the device buffers are donated to the next step
                    host = jax.tree.map(lambda x: np.array(x, copy=True), params)
                    best, bad = (val_loss, host, epoch + 1), 0
                else:
                    bad += 1
            history.append(record)
            if progress:
                print(json.dumps(record), file=sys.stderr)  # progress: stdout stays the result
            if len(self.val_idx) and bad >= self.config.patience:
                break
        if best[1] is not None and best[2] != len(history):
            params = jax.tree.map(jnp.asarray, best[1])
            if self.clf.mesh is not None:
                params = jax.device_put(params, bert_param_shardings(params, self.clf.mesh))
        best_epoch = best[2] if best[1] is not None else len(history)
        return params, history, best_epoch, step


def _checked_labels_and_weights(texts, labels, weights, num_classes: int):
    """(int32 labels, float32 weights, default 1); ValueError on a length or label mismatch."""
    labels = np.asarray(labels, np.int32)
    if len(texts) != len(labels) or len(texts) == 0:
        raise ValueError(f"need as many labels as texts (> 0), got {len(texts)}, {len(labels)}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    weights = np.ones(len(texts), np.float32) if weights is None else np.asarray(weights, "f4")
    return labels, weights


def train_classifier(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    num_classes: int,
    key: jax.Array,
    config: STMConfig = _DEFAULT_CONFIG,
    weights: Sequence[float] | None = None,
    mesh=None,
    cache_dir=None,
    classifier: Classifier | None = None,
    val_texts: Sequence[str] | None = None,
    val_labels: Sequence[int] | None = None,
    progress: bool = False,
) -> tuple[Classifier, dict]:
    """Fine-tunes a classifier on (texts, labels), early-stopping on a held-out split.

    The validation split is drawn from ``texts`` themselves (the synthetic training set),
    never from test or private data. After each epoch the validation loss is measured; the
    best weights are kept on the host and restored at the end; training stops after
    ``config.patience`` epochs without improvement.

    Args:
      texts, labels: training data; labels in [0, num_classes).
      num_classes: number of classes C.
      key: PRNG key (head init, shuffling, validation split, dropout).
      config: hyperparameters.
      weights: optional per-sample loss weights (default 1).
      mesh: optional mesh; batches split over ``"data"`` (batch_size rounded up to fit).
      classifier: start from this classifier instead of building one (its config is ignored).
      val_texts, val_labels: explicit validation set (synthetic!) instead of the split.
      progress: print one line per epoch.

    Returns:
      (classifier, info) where info has "history" (per epoch: train_loss, val_loss,
      val_accuracy), "best_epoch", "stopped_early", "steps", "num_train", "num_val",
      "val_indices" (positions in ``texts``, or after them for an explicit validation set).
    """
    labels, weights = _checked_labels_and_weights(texts, labels, weights, num_classes)
    rng = batch_order_rng(key)
    dropout_key = jax.random.fold_in(key, 1) if config.dropout else None
    clf = classifier or build_classifier(
        num_classes, config, rng=rng, mesh=mesh, cache_dir=cache_dir
    )
    texts, labels, weights, train_idx, val_idx = _with_validation(
        texts, labels, weights, config, rng, val_texts, val_labels
    )
    total = math.ceil(len(train_idx) / config.batch_size) * config.epochs
    graphdef, params = nnx.split(clf.model)
    shards = shd.axis_size(clf.mesh, shd.DATA)
    fit = _Fit(
        clf=clf,
        config=config,
        graphdef=graphdef,
        tx=make_optimizer(config.weight_decay, config.max_grad_norm),
        texts=texts,
        ids=tokenize(clf.tokenizer, list(texts), config.max_length),
        labels=labels,
        weights=weights,
        train_idx=train_idx,
        val_idx=val_idx,
        dropout_key=dropout_key,
        rows=-(-config.batch_size // shards) * shards,
        warmup=max(1, int(config.warmup_ratio * total)),
        total=total,
    )
    params, history, best_epoch, steps = fit.run(params, rng, progress)
    nnx.update(clf.model, params)
    info = {
        "history": history,
        "best_epoch": best_epoch,
        "stopped_early": len(history) < config.epochs,
        "steps": steps,
        "num_train": int(len(train_idx)),
        "num_val": int(len(val_idx)),
        "val_indices": val_idx.tolist(),
    }
    return clf, info
