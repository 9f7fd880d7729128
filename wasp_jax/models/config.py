"""Typed, frozen model configurations: every decoder architecture, and the BERT encoder."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

#: The built-in decoder architectures.
ARCHS = ("llama", "gemma3", "gpt2", "opt")
#: Architectures added at run time (`wasp_jax.models.build.register_architecture`).
_registered_archs: set[str] = set()
ENCODER_ACTS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoderConfig:
    """Decoder hyperparameters (public, JSON round-trippable, hashable).

    Attributes:
      arch: "llama" (Llama 2/3, Mistral, SmolLM2, Qwen2-style with ``qkv_bias``),
        "gemma3" or "gpt2".
      vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads,
        head_dim: model dimensions.
      norm_eps: RMSNorm / LayerNorm epsilon.
      rope_theta: RoPE base (global layers for Gemma 3).
      rope_scaling: HF-style rope scaling as sorted (key, value) pairs, or None.
      rope_local_theta: RoPE base of Gemma 3 sliding-window layers.
      max_position: longest supported position (learned tables, or informative), or None.
      sliding_window: window of the windowed layers, or None for full attention.
      layer_is_global: per layer, True if it attends globally; None means every layer
        uses ``sliding_window`` (None window -> global).
      tie_embeddings: output head is the transposed embedding.
      qkv_bias: q/k/v projections have biases (Qwen2).
      query_scale: attention score multiplier; None -> head_dim ** -0.5.
      attn_softcap, final_softcap: optional tanh soft-capping.
      hidden_act: "silu" (SwiGLU), "gelu_tanh" (GeGLU), "gelu_new" (GPT-2 MLP) or "relu"
        (OPT).
      embed_dim: OPT's ``word_embed_proj_dim`` where it differs from ``hidden_size`` (the
        embedding is projected in and the last hidden state out), else None.
      norm_before: pre-norm blocks (OPT's ``do_layer_norm_before``; False: post-norm and no
        final norm, as in OPT-350m).
    """

    arch: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: tuple[tuple[str, Any], ...] | None = None
    rope_local_theta: float | None = None
    max_position: int | None = None
    sliding_window: int | None = None
    layer_is_global: tuple[bool, ...] | None = None
    tie_embeddings: bool = True
    qkv_bias: bool = False
    query_scale: float | None = None
    attn_softcap: float | None = None
    final_softcap: float | None = None
    hidden_act: str = "silu"
    embed_dim: int | None = None
    norm_before: bool = True

    def __post_init__(self):
        if self.arch not in known_archs():
            raise ValueError(f"unknown arch {self.arch!r}; supported: {', '.join(known_archs())}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.layer_is_global is not None and len(self.layer_is_global) != self.num_layers:
            raise ValueError("layer_is_global must have one entry per layer")

    @property
    def scale(self) -> float:
        """Attention score multiplier."""
        return self.query_scale if self.query_scale is not None else self.head_dim**-0.5

    @property
    def rope_scaling_dict(self) -> dict | None:
        """``rope_scaling`` as a dict (or None)."""
        return None if self.rope_scaling is None else dict(self.rope_scaling)

    def to_json(self) -> str:
        """Serialises to JSON (tuples become lists)."""
        d = dataclasses.asdict(self)
        if self.rope_scaling is not None:
            d["rope_scaling"] = dict(self.rope_scaling)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DecoderConfig:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        return cls.create(**d)

    @classmethod
    def create(cls, **kw) -> DecoderConfig:
        """Builds a config, normalising dicts/lists to hashable tuples."""
        rs = kw.get("rope_scaling")
        if isinstance(rs, dict):
            kw["rope_scaling"] = tuple(sorted((k, _freeze(v)) for k, v in rs.items()))
        if kw.get("layer_is_global") is not None:
            kw["layer_is_global"] = tuple(bool(g) for g in kw["layer_is_global"])
        return cls(**kw)


def known_archs() -> tuple[str, ...]:
    """The decoder architecture names a `DecoderConfig` accepts: built-in, then registered."""
    return (*ARCHS, *sorted(_registered_archs - set(ARCHS)))


def _freeze(v):
    return tuple(v) if isinstance(v, list) else v


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
        if self.hidden_act not in ENCODER_ACTS:
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
