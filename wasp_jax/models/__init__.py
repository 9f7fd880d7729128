"""Flax NNX decoders (Llama family, Gemma 3, GPT-2, OPT), the T5 / Flan-T5 encoder-decoder,
the BERT and sentence-T5 embedders, and their loaders.

The encoder (``wasp_jax.models.bert.load_bert``) shares the decoders' layers, sharding
rules, registry and cache. ``load_causal_lm`` also loads T5 folders; their module
(``wasp_jax.models.t5.T5Model``) has its own encode / cross_kv / decode contract, which the
generator starts with the hook of ``wasp_jax.models.t5_sampler``. Contract for the decoders
(``wasp_jax.plm``):

``load_causal_lm(spec, *, cache_dir=None, mesh=None, dtype=jnp.float32) -> LoadedLM``
  ``spec``: a registry name (``supported()``: "smollm2-135m-instruct", "gemma3-270m",
  "tiny-llama", "tiny-gemma3"), a ``.gguf`` file or a Hugging Face folder. ``LoadedLM`` is
  a frozen dataclass ``(name, model, tokenizer, config, chat_template, is_instruct)``.

``model.config`` (``DecoderConfig``) has num_layers, num_heads, num_kv_heads, head_dim,
vocab_size, hidden_size, max_position (int | None), sliding_window (int | None).

``model.init_cache(batch_size, max_len, dtype=jnp.float32)`` -> ``{"k", "v"}``, each
``[num_layers, B, S, num_kv_heads, head_dim]`` (a plain pytree; broadcast/shard freely).

``model(tokens, positions, cache, cache_index, kv_mask, *, last_only=False, prefix=None,
per_layer=None)``
  -> ``(logits float32 [B, T, V], new_cache)``. ``tokens``/``positions`` int32 [B, T];
  ``cache_index`` int32 scalar (may be traced): the chunk is written to cache slots
  ``[cache_index, cache_index + T)``; ``kv_mask`` bool [B, S] marks slots holding real
  tokens, *including this chunk's*. Query ``t`` (slot ``q = cache_index + t``) attends to
  slots ``s`` with ``kv_mask[b, s]`` and ``s <= q`` (and ``q - s < window`` on
  sliding-window layers). ``positions`` only feed RoPE / learned position tables; for
  left padding, pad slots have ``kv_mask`` False and a row's positions start at 0 at its
  first real token. ``last_only=True`` (static) returns logits of the last chunk position
  only, ``[B, 1, V]`` (saves the [T, V] logits of a long prefill); an int array [B, K] the
  logits of those positions, ``[B, K, V]`` (``layers.select_positions``). Layers run under one
  ``lax.scan``, or as a loop over ``per_layer`` (one weight dict per layer, from
  ``sharding.unstack_layers``) when given. ``prefix`` is a prompt cache shared by groups of
  rows (``layers.prefix_parts``; what ``sampler.decoder_start`` passes while decoding).

``partition_specs(model, mesh)`` -> ``nnx.State`` of ``PartitionSpec`` shaped like
``nnx.state(model)``: head axes of q/k/v/o and the MLP hidden axis over mesh axis "model"
(replicated when not divisible), everything else replicated; the table is the model
class's ``SHARD_AXES`` and the rules are `wasp_jax.models.sharding.axis_specs`.

``register_architecture(arch, cls)`` and ``register_tiny_model(name, make_config)`` add a
decoder architecture and a tiny random model of it (recipe: docs/extending_model.md).

``save_state`` / ``restore_state`` (``wasp_jax.models.cache``): orbax helpers for any
pytree or ``nnx.State``, restoring onto given shardings.
"""

from wasp_jax.models.build import (
    build_model,
    model_class,
    partition_specs,
    register_architecture,
)
from wasp_jax.models.cache import cache_root, restore_state, save_state
from wasp_jax.models.config import DecoderConfig
from wasp_jax.models.convert import UnsupportedModelError
from wasp_jax.models.loading import LoadedLM, load_causal_lm, supported
from wasp_jax.models.registry import register_tiny_model

__all__ = [
    "DecoderConfig",
    "LoadedLM",
    "UnsupportedModelError",
    "build_model",
    "cache_root",
    "load_causal_lm",
    "model_class",
    "partition_specs",
    "register_architecture",
    "register_tiny_model",
    "restore_state",
    "save_state",
    "supported",
]
