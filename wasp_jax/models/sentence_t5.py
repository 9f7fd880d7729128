"""sentence-T5 as an embedder: a T5 encoder with the pooling, dense and normalisation steps
that its sentence-transformers folder declares (the WASP paper's default embedder is
sentence-t5-base).

A sentence-transformers folder lists its steps in ``modules.json``: the transformer (here
a T5 encoder, its config.json and safetensors at the folder's root), then ``Pooling``
(``1_Pooling/config.json``), optional ``Dense`` layers (``2_Dense/config.json`` and their
own safetensors) and ``Normalize``. They are read from there, not assumed
(:func:`read_st_modules`); both the older (``pooling_mode_mean_tokens``) and the newer
(``pooling_mode``) spellings of the pooling config are understood.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from wasp_jax.models import convert, layers
from wasp_jax.models import sharding as shd
from wasp_jax.models.t5 import SHARD_AXES, T5Config, T5Stack, run_encoder
from wasp_jax.models.t5_convert import t5_encoder_params
from wasp_jax.models.tokenizer import hf_tokenizer

POOLINGS = ("mean", "cls", "max")
_ACTIVATIONS = {"Identity": None, "Tanh": jnp.tanh}


@dataclasses.dataclass(frozen=True)
class StModules:
    """The steps after the transformer: pooling mode, dense layers (weight [in, out], bias
    or None, activation name), normalisation, and the folder's ``max_seq_length``."""

    pooling: str
    dense: tuple[tuple[np.ndarray, np.ndarray | None, str], ...]
    normalize: bool
    max_seq_length: int | None


def _pooling_mode(conf: dict) -> str:
    mode = conf.get("pooling_mode")
    if mode is None:
        flags = [m for m in POOLINGS if conf.get(f"pooling_mode_{m}_tokens")]
        flags += ["mean_sqrt_len"] if conf.get("pooling_mode_mean_sqrt_len_tokens") else []
        mode = flags[0] if len(flags) == 1 else "+".join(flags) or "none"
    if mode not in POOLINGS:
        raise ValueError(f"pooling {mode!r} is not supported; supported: {', '.join(POOLINGS)}")
    return mode


def _dense(folder: pathlib.Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    conf = json.loads((folder / "config.json").read_text())
    act = conf.get("activation_function", "torch.nn.modules.linear.Identity").rsplit(".", 1)[-1]
    if act not in _ACTIVATIONS:
        raise ValueError(f"Dense activation {act!r} is not supported; supported: Identity, Tanh")
    if not (folder / "model.safetensors").is_file():
        raise ValueError(f"{folder} has no model.safetensors (PyTorch .bin files are not read)")
    sd = load_file(str(folder / "model.safetensors"))
    w = sd["linear.weight"].astype(np.float32).T
    b = sd.get("linear.bias")
    return w, None if b is None else b.astype(np.float32), act


def read_st_modules(folder: pathlib.Path) -> StModules:
    """The steps a sentence-transformers folder declares (ValueError for unsupported ones)."""
    folder = pathlib.Path(folder)
    mods = json.loads((folder / "modules.json").read_text())
    pooling, dense, normalize = None, [], False
    for m in sorted(mods, key=lambda m: m.get("idx", 0)):
        kind = m["type"].rsplit(".", 1)[-1]
        path = folder / m.get("path", "")
        if kind == "Transformer":
            continue
        if kind == "Pooling":
            pooling = _pooling_mode(json.loads((path / "config.json").read_text()))
        elif kind == "Dense":
            dense.append(_dense(path))
        elif kind == "Normalize":
            normalize = True
        else:
            raise ValueError(f"sentence-transformers module {kind!r} is not supported")
    if pooling is None:
        raise ValueError(f"{folder}/modules.json declares no Pooling step")
    return StModules(pooling, tuple(dense), normalize, _max_seq_length(folder))


def _max_seq_length(folder: pathlib.Path) -> int | None:
    """``max_seq_length`` of sentence_bert_config.json, or (as sentence-transformers 5
    saves it) the tokenizer's ``model_max_length``; None when neither says."""
    for name, key in (
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        path = folder / name
        value = json.loads(path.read_text()).get(key) if path.is_file() else None
        if isinstance(value, int) and 0 < value < 1_000_000:
            return value
    return None


def pool(hidden, mask, mode: str):
    """Token states [B, T, D] pooled over the real tokens (mask [B, T]) -> [B, D]."""
    m = mask.astype(hidden.dtype)[..., None]
    if mode == "mean":
        return (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    if mode == "max":
        return jnp.where(m > 0, hidden, -1e9).max(axis=1)
    return hidden[:, 0]


@dataclasses.dataclass(frozen=True)
class EmbedderInfo:
    """What `wasp_jax.models.embedder.Embedder` reads of a loaded model's config."""

    hidden_size: int  # the embedding width (after the dense layers)
    max_position: int
    pad_token_id: int


class SentenceT5(nnx.Module):
    """T5 encoder + pooling + dense layers (+ normalisation), as the folder declares."""

    SHARD_AXES = SHARD_AXES

    def __init__(self, config: T5Config, steps: StModules, *, rngs: nnx.Rngs):
        self.config = config
        self.pooling = steps.pooling
        self.normalize = steps.normalize
        self.shared = nnx.Param(jnp.zeros((config.vocab_size, config.d_model)))
        self.encoder = T5Stack(config, False, rngs=rngs)
        self.dense = nnx.List([nnx.Param(jnp.asarray(w)) for w, _, _ in steps.dense])
        self.dense_bias = nnx.List(
            [nnx.Param(jnp.asarray(b)) for _, b, _ in steps.dense if b is not None]
        )
        self.activations = tuple(a for _, _, a in steps.dense)
        self.has_bias = tuple(b is not None for _, b, _ in steps.dense)
        self.compute_dtype = None

    @property
    def dim(self) -> int:
        return int(self.dense[-1].shape[1]) if len(self.dense) else self.config.d_model

    def __call__(self, input_ids, attention_mask):
        """Encoder token states [B, T, D]."""
        return run_encoder(
            self.shared[...],
            self.encoder,
            self.config,
            input_ids,
            attention_mask,
            self.compute_dtype,
        )

    def sentence_embedding(self, input_ids, attention_mask):
        """[B, T] -> float32 [B, dim]: pooled, projected, normalised as declared."""
        x = pool(self(input_ids, attention_mask).astype(jnp.float32), attention_mask, self.pooling)
        biases = iter(self.dense_bias)
        for w, act, has_b in zip(self.dense, self.activations, self.has_bias):
            x = layers.dense(x, w[...], self.compute_dtype)
            if has_b:
                x = x + next(biases)[...]
            if _ACTIVATIONS[act] is not None:
                x = _ACTIVATIONS[act](x)
        if self.normalize:
            x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        return x


def embed_params(model_params: dict, steps: StModules) -> dict:
    """The pure-dict params of :class:`SentenceT5` from T5 encoder params and the steps."""
    out = dict(model_params)
    out["dense"] = {i: w for i, (w, _, _) in enumerate(steps.dense)}
    biases = [b for _, b, _ in steps.dense if b is not None]
    out["dense_bias"] = {i: b for i, b in enumerate(biases)}
    return out


def info(model: SentenceT5, pad_id: int, max_seq_length: int | None) -> EmbedderInfo:
    """T5's positions are relative: the longest input is the folder's ``max_seq_length``
    or 512 (T5's training length), whichever is larger."""
    return EmbedderInfo(model.dim, max(512, max_seq_length or 0), pad_id)


class LoadedSentenceT5(NamedTuple):
    """A ready sentence-T5: name, :class:`EmbedderInfo`, module and tokenizer."""

    name: str
    config: EmbedderInfo
    model: SentenceT5
    tokenizer: Any


def load_sentence_t5(spec: str, *, mesh: jax.sharding.Mesh | None = None) -> LoadedSentenceT5:
    """Loads a sentence-transformers folder whose transformer is a T5 encoder.

    Raises:
      ValueError: a missing file or a step this module does not implement.
    """
    folder = pathlib.Path(spec).expanduser()
    if not (folder / "modules.json").is_file():
        raise ValueError(
            f"{folder} has no modules.json: a T5 embedder must be a sentence-transformers "
            "folder (transformer, Pooling, optional Dense and Normalize)"
        )
    steps = read_st_modules(folder)
    cfg = T5Config.from_hf(json.loads((folder / "config.json").read_text()))
    try:
        tensors = convert.read_safetensors(folder)
    except FileNotFoundError as err:
        raise ValueError(f"{folder} has no *.safetensors files") from err
    params = embed_params(t5_encoder_params(cfg, tensors), steps)
    model = nnx.eval_shape(lambda: SentenceT5(cfg, steps, rngs=nnx.Rngs(0)))
    state = nnx.state(model)
    nnx.replace_by_pure_dict(state, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params))
    if mesh is not None:
        state = jax.device_put(state, shd.param_shardings(state, mesh, SHARD_AXES))
    nnx.update(model, state)
    tok = hf_tokenizer(folder)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return LoadedSentenceT5(str(folder), info(model, pad, steps.max_seq_length), model, tok)
