"""The fine-tuned small task model: a BERT encoder with a linear head (docs/method.md §3.1).

The encoder starts from a pre-trained BERT (all-MiniLM-L6-v2 by default, or any BERT folder);
a linear head reads the mean-pooled (or pooled [CLS]) state. :class:`Classifier` is the host
wrapper that tokenizes, predicts in length-bucketed jitted batches (split over the mesh's
``"data"`` axis when a mesh is given) and saves / restores itself. Fine-tuning is in
`wasp_jax.stm.finetune`.

    clf = build_classifier(2, STMConfig(), rng=np.random.default_rng(0))
    pred = clf.predict(test_texts)
    clf.save("runs/x/stm"); clf = Classifier.load("runs/x/stm")
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wasp_jax.kernels.padding import length_bucket, row_bucket
from wasp_jax.models import cache
from wasp_jax.models import sharding as shd
from wasp_jax.models.bert import (
    BertConfig,
    BertEncoder,
    bert_param_shardings,
    cpu_chunk_tokens,
    dropout,
    load_bert,
    map_row_chunks,
    mean_pool,
)
from wasp_jax.models.embedder import (
    bucketed_batches,
    pad_batch,
    tokenize,
)
from wasp_jax.models.layers import compute_dtype


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
    # Dense products of the encoder: "auto" (bfloat16 on GPU/TPU, float32 on CPU), "float32"
    # or "bfloat16" (float32 accumulation, float32 master weights; `models.layers.dense`).
    precision: str = "auto"

    def __post_init__(self):
        compute_dtype(self.precision)  # raises on an unknown name
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
        return batched_logits(
            graphdef, state, self.tokenizer, texts, self.config, self.mesh, max_length
        )

    def predict(self, texts: Sequence[str], *, max_length: int | None = None) -> np.ndarray:
        """int [n] predicted labels."""
        return self.predict_logits(texts, max_length=max_length).argmax(-1)

    def save(self, path: str | pathlib.Path) -> None:
        """orbax checkpoint of the weights plus config and tokenizer files under ``path``."""
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
        # transformers is slow to import and only needed to restore a saved tokenizer
        from transformers import AutoTokenizer

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
        shardings = None if mesh is None else bert_param_shardings(abstract_state, mesh)
        state = cache.restore_state(path, abstract_state, shardings)
        tokenizer = AutoTokenizer.from_pretrained(str(path / "tokenizer"))
        model = nnx.merge(graphdef, state)
        model.encoder.compute_dtype = compute_dtype(config.precision)
        return cls(model, tokenizer, meta["num_classes"], config, mesh)


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
    encoder.compute_dtype = compute_dtype(config.precision)
    if not config.dropout:
        encoder.config = dataclasses.replace(encoder.config, dropout_rate=0.0)
    model = SequenceClassifier(encoder, num_classes, config.pooling, rngs=nnx.Rngs(0))
    shape = model.head.kernel.shape
    model.head.kernel.value = jnp.asarray(rng.normal(0.0, 0.02, shape).astype(np.float32))
    if mesh is not None:
        nnx.update(model, jax.device_put(nnx.state(model), bert_param_shardings(model, mesh)))
    return Classifier(model, loaded.tokenizer, num_classes, config, mesh)


def _logits(graphdef, state, ids, mask, chunk_tokens=None):
    model = nnx.merge(graphdef, state)
    return map_row_chunks(model, ids, mask, chunk_tokens=chunk_tokens)


# evaluation logits [B, T] -> [B, C]; chunk_tokens: see bert.map_row_chunks
logits_step = jax.jit(_logits, static_argnums=(0, 4))


def place_batch(arrays, mesh):
    """Puts host arrays on ``mesh``, rows split over ``"data"`` (unchanged without a mesh)."""
    if mesh is None:
        return arrays
    return tuple(jax.device_put(a, shd.batch_sharding(mesh, np.shape(a))) for a in arrays)


def batched_logits(graphdef, state, tokenizer, texts, config, mesh, max_length=None):
    """float32 [n, C] logits of ``texts`` under (graphdef, state), in input order.

    Texts are tokenized to ``max_length`` (default ``config.max_length``) and run in
    length-bucketed batches of ``config.eval_batch_size`` rows; [0, 0] for no texts.
    """
    max_length = max_length or config.max_length
    ids = tokenize(tokenizer, list(texts), max_length)
    out = None
    for idx in bucketed_batches([len(x) for x in ids], config.eval_batch_size):
        length = length_bucket(max(len(ids[i]) for i in idx), max_length)
        rows = row_bucket(len(idx), config.eval_batch_size, shd.axis_size(mesh, shd.DATA))
        batch, mask = pad_batch([ids[i] for i in idx], length, rows, tokenizer.pad_token_id)
        batch, mask = place_batch((batch, mask), mesh)
        chunks = cpu_chunk_tokens(mesh)
        logits = shd.to_host(logits_step(graphdef, state, batch, mask, chunks))[: len(idx)]
        if out is None:
            out = np.zeros((len(ids), logits.shape[-1]), np.float32)
        out[idx] = logits
    return out if out is not None else np.zeros((0, 0), np.float32)
