"""Typed, frozen configuration shared by every decoder architecture."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

ARCHS = ("llama", "gemma3", "gpt2")


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
      hidden_act: "silu" (SwiGLU), "gelu_tanh" (GeGLU) or "gelu_new" (GPT-2 MLP).
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

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; supported: {', '.join(ARCHS)}")
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


def _freeze(v):
    return tuple(v) if isinstance(v, list) else v
