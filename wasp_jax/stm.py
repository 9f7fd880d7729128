"""Small task model (STM): a BERT sequence classifier fine-tuned with Optax, and a linear probe.

WASP's metric is the accuracy of a classifier trained on the synthetic data and tested on real
data (ALGORITHM.md section 3.1). Fine-tuning: the encoder starts from a pre-trained BERT
(all-MiniLM-L6-v2 by default, or any BERT folder), a linear head reads the mean-pooled (or
pooled [CLS]) state, AdamW with linear warm-up/decay, per-sample weights in the loss,
length-bucketed batches, one jitted train step with donated state, and early stopping on a
validation split of the *training* (synthetic) data that restores the best weights. With a
mesh, batches are split over ``"data"``. The probe is logistic regression on frozen embeddings.

    clf, info = train_classifier(texts, labels, num_classes=2, key=jax.random.key(0))
    pred = clf.predict(test_texts)
    clf.save("runs/x/stm"); clf = Classifier.load("runs/x/stm")
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from wasp_jax.embed import (
    bucketed_batches,
    data_sharding,
    data_size,
    length_bucket,
    pad_batch,
    row_bucket,
    tokenize,
)
from wasp_jax.models.bert import (
    BertConfig,
    BertEncoder,
    cpu_chunk_tokens,
    dropout,
    load_bert,
    map_row_chunks,
    mean_pool,
)


@dataclasses.dataclass(frozen=True)
class STMConfig:
    """Fine-tuning hyperparameters (public; none of them depends on private data)."""

    encoder: str = "all-minilm-l6-v2"
    pooling: str = "mean"
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int = 128
    val_fraction: float = 0.1
    patience: int = 2
    dropout: bool = True
    max_grad_norm: float = 1.0

    def __post_init__(self):
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}")
        if self.epochs < 1 or self.batch_size < 1 or not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("need epochs >= 1, batch_size >= 1 and 0 <= val_fraction < 1")


class SequenceClassifier(nnx.Module):
    """BERT encoder + linear head: int [B, T] ids and mask -> float32 [B, C] logits."""

    def __init__(self, encoder: BertEncoder, num_classes: int, pooling: str, *, rngs: nnx.Rngs):
        d = encoder.config.hidden_size
        self.encoder = encoder
        self.pooling = pooling
        self.head = nnx.Linear(d, num_classes, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, input_ids, attention_mask, *, dropout_key=None):
        key_enc = key_head = None
        if dropout_key is not None:
            key_enc, key_head = jax.random.split(dropout_key)
        hidden = self.encoder(input_ids, attention_mask, dropout_key=key_enc)
        if self.pooling == "cls":
            pooled = self.encoder.pooled_cls(hidden)
        else:
            pooled = mean_pool(hidden, attention_mask)
        return self.head(dropout(pooled, self.encoder.config.dropout_rate, key_head))


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


@dataclasses.dataclass
class Classifier:
    """A trained (or freshly built) classifier with its tokenizer. Host-side wrapper."""

    model: SequenceClassifier
    tokenizer: Any
    num_classes: int
    config: STMConfig
    mesh: Any = None

    def predict_logits(self, texts: Sequence[str], *, max_length: int | None = None):
        """float32 [n, C] logits, in input order (length-bucketed, jitted)."""
        graphdef, state = nnx.split(self.model)
        return _predict(graphdef, state, self.tokenizer, texts, self.config, self.mesh, max_length)

    def predict(self, texts: Sequence[str], *, max_length: int | None = None) -> np.ndarray:
        """int [n] predicted labels."""
        return self.predict_logits(texts, max_length=max_length).argmax(-1)

    def save(self, path: str | pathlib.Path) -> None:
        """orbax checkpoint of the weights plus config and tokenizer files under ``path``."""
        from wasp_jax.models import cache

        path = pathlib.Path(path)
        meta = {
            "num_classes": self.num_classes,
            "stm": dataclasses.asdict(self.config),
            "bert": dataclasses.asdict(self.model.encoder.config),
        }
        cache.save_state(path, nnx.state(self.model), meta=meta)
        self.tokenizer.save_pretrained(str(path / "tokenizer"))

    @classmethod
    def load(cls, path: str | pathlib.Path, *, mesh=None) -> Classifier:
        """Restores a classifier written by :meth:`save` (placed on ``mesh`` if given)."""
        from transformers import AutoTokenizer

        from wasp_jax.models import cache
        from wasp_jax.models.bert import param_shardings

        path = pathlib.Path(path)
        meta = cache.read_meta(path)
        config, bert_config = STMConfig(**meta["stm"]), BertConfig(**meta["bert"])
        abstract = nnx.eval_shape(
            lambda: SequenceClassifier(
                BertEncoder(bert_config, rngs=nnx.Rngs(0)),
                meta["num_classes"],
                config.pooling,
                rngs=nnx.Rngs(0),
            )
        )
        graphdef, abstract_state = nnx.split(abstract)
        shardings = None if mesh is None else param_shardings(abstract_state, mesh)
        state = cache.restore_state(path, abstract_state, shardings)
        tokenizer = AutoTokenizer.from_pretrained(str(path / "tokenizer"))
        return cls(nnx.merge(graphdef, state), tokenizer, meta["num_classes"], config, mesh)


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


def _logits(graphdef, state, ids, mask, chunk_tokens=None):
    model = nnx.merge(graphdef, state)
    return map_row_chunks(model, ids, mask, chunk_tokens=chunk_tokens)


# evaluation logits [B, T] -> [B, C]; chunk_tokens: see bert.map_row_chunks
logits_step = jax.jit(_logits, static_argnums=(0, 4))


def _put(arrays, mesh):
    if mesh is None:
        return arrays
    return tuple(jax.device_put(a, data_sharding(mesh, np.ndim(a))) for a in arrays)


def _predict(graphdef, state, tokenizer, texts, config, mesh, max_length=None):
    max_length = max_length or config.max_length
    ids = tokenize(tokenizer, list(texts), max_length)
    out = None
    for idx in bucketed_batches([len(x) for x in ids], config.eval_batch_size):
        length = length_bucket(max(len(ids[i]) for i in idx), max_length)
        rows = row_bucket(len(idx), config.eval_batch_size, data_size(mesh))
        batch, mask = pad_batch([ids[i] for i in idx], length, rows, tokenizer.pad_token_id)
        batch, mask = _put((batch, mask), mesh)
        chunks = cpu_chunk_tokens(mesh)
        logits = np.asarray(logits_step(graphdef, state, batch, mask, chunks))[: len(idx)]
        if out is None:
            out = np.zeros((len(ids), logits.shape[-1]), np.float32)
        out[idx] = logits
    return out if out is not None else np.zeros((0, 0), np.float32)


def _make_batch(ids, labels, weights, idx, rows, max_length, pad_id):
    # rows beyond len(idx) are padding: weight 0 and valid False, so they add nothing
    length = length_bucket(max(len(ids[i]) for i in idx), max_length)
    b_ids, b_mask = pad_batch([ids[i] for i in idx], length, rows, pad_id)
    extra = rows - len(idx)
    b_lab = np.concatenate([labels[idx], np.zeros(extra, np.int32)])
    b_w = np.concatenate([weights[idx], np.zeros(extra, np.float32)])
    return b_ids, b_mask, b_lab, b_w, np.arange(rows) < len(idx)


#: Below this many validation texts, early stopping and best-epoch restore follow noise.
MIN_RELIABLE_VAL = 20


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


def build_classifier(
    num_classes: int, config: STMConfig, *, rng: np.random.Generator, mesh=None, cache_dir=None
) -> Classifier:
    """A classifier with the pre-trained encoder ``config.encoder`` and a fresh head.

    The head kernel is drawn from normal(0, 0.02) with ``rng`` on the host (no XLA compile).
    """
    loaded = load_bert(config.encoder, cache_dir=cache_dir, mesh=mesh)
    if config.max_length > loaded.config.max_position:
        raise ValueError(f"max_length {config.max_length} > {loaded.config.max_position}")
    encoder = loaded.model
    if not config.dropout:
        encoder.config = dataclasses.replace(encoder.config, dropout_rate=0.0)
    model = SequenceClassifier(encoder, num_classes, config.pooling, rngs=nnx.Rngs(0))
    shape = model.head.kernel.shape
    model.head.kernel.value = jnp.asarray(rng.normal(0.0, 0.02, shape).astype(np.float32))
    if mesh is not None:
        from wasp_jax.models.bert import param_shardings

        nnx.update(model, jax.device_put(nnx.state(model), param_shardings(model, mesh)))
    return Classifier(model, loaded.tokenizer, num_classes, config, mesh)


def train_classifier(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    num_classes: int,
    key: jax.Array,
    config: STMConfig = STMConfig(),
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
    labels = np.asarray(labels, np.int32)
    if len(texts) != len(labels) or len(texts) == 0:
        raise ValueError(f"need as many labels as texts (> 0), got {len(texts)}, {len(labels)}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    weights = np.ones(len(texts), np.float32) if weights is None else np.asarray(weights, "f4")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    dropout_key = jax.random.fold_in(key, 1) if config.dropout else None
    clf = classifier or build_classifier(
        num_classes, config, rng=rng, mesh=mesh, cache_dir=cache_dir
    )
    mesh = clf.mesh
    train_idx, val_idx = split_validation(len(texts), config.val_fraction, rng)
    if val_texts is not None:
        train_idx = np.arange(len(texts))
        texts, labels = list(texts) + list(val_texts), np.concatenate([labels, val_labels])
        weights = np.concatenate([weights, np.ones(len(val_texts), np.float32)])
        val_idx = np.arange(len(train_idx), len(texts))
    if 0 < len(val_idx) < MIN_RELIABLE_VAL:
        from wasp_jax.data import DataWarning

        warnings.warn(
            f"the STM validation split holds only {len(val_idx)} texts, so early stopping and "
            "the best-epoch restore follow noise (a near-constant classifier can win); train on "
            f"more texts, raise val_fraction, or set val_fraction=0 to train all "
            f"{config.epochs} epochs",
            DataWarning,
            stacklevel=2,
        )
    ids = tokenize(clf.tokenizer, list(texts), config.max_length)
    rows = -(-config.batch_size // data_size(mesh)) * data_size(mesh)
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_ratio * total))
    tx = make_optimizer(config.weight_decay, config.max_grad_norm)
    pad = clf.tokenizer.pad_token_id
    graphdef, params = nnx.split(clf.model)
    opt_state = tx.init(params)
    best = (np.inf, None, -1)
    history, bad, step = [], 0, 0
    for epoch in range(config.epochs):
        losses = []
        for batch in _train_batches([len(ids[i]) for i in train_idx], config.batch_size, rng):
            arrays = _make_batch(
                ids, labels, weights, train_idx[batch], rows, config.max_length, pad
            )
            lr = learning_rate(step, peak=config.learning_rate, warmup=warmup, total=total)
            params, opt_state, loss = train_step(
                graphdef, tx, params, opt_state, _put(arrays, mesh), lr, dropout_key, step
            )
            losses.append(loss)
            step += 1
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(jax.device_get(losses)))}
        if len(val_idx):
            logits = _predict(
                graphdef, params, clf.tokenizer, [texts[i] for i in val_idx], config, mesh
            )
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels[val_idx])
            w_val = weights[val_idx] if weights[val_idx].sum() > 0 else None
            val_loss = float(np.average(ce, weights=w_val))
            record.update(
                val_loss=val_loss, val_accuracy=float((logits.argmax(-1) == labels[val_idx]).mean())
            )
            if val_loss < best[0]:
                # copy to host: the device buffers are donated to the next step
                host = jax.tree.map(lambda x: np.array(x, copy=True), params)
                best, bad = (val_loss, host, epoch + 1), 0
            else:
                bad += 1
        history.append(record)
        if progress:
            print(json.dumps(record))
        if len(val_idx) and bad >= config.patience:
            break
    if best[1] is not None and best[2] != len(history):
        params = jax.tree.map(jnp.asarray, best[1])
        if mesh is not None:
            from wasp_jax.models.bert import param_shardings

            params = jax.device_put(params, param_shardings(params, mesh))
    nnx.update(clf.model, params)
    info = {
        "history": history,
        "best_epoch": best[2] if best[1] is not None else len(history),
        "stopped_early": len(history) < config.epochs,
        "steps": step,
        "num_train": int(len(train_idx)),
        "num_val": int(len(val_idx)),
        "val_indices": val_idx.tolist(),
    }
    return clf, info


# ----------------------------------------------------------------------------- linear probe


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
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    tr, va = split_validation(len(y), val_fraction, rng)
    mean, scale = x[tr].mean(0), x[tr].std(0) + 1e-6
    z = (x - mean) / scale
    (kernel, bias), curve = _probe_fit_jit(
        z[tr], y[tr], w[tr], z[va], y[va], w[va], num_classes=num_classes, steps=steps,
        lr=learning_rate, l2=l2,
    )  # fmt: skip
    probe = LinearProbe(mean, scale, np.asarray(kernel), np.asarray(bias))
    best = float(np.min(curve)) if len(va) else float("nan")
    return probe, {"num_train": int(len(tr)), "num_val": int(len(va)), "best_val_loss": best}
