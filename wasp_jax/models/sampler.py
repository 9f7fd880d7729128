"""The jitted samplers behind `Generator` (`wasp_jax.models.generator`): the device side.

One compiled program per shape bucket (`SamplerShape`) does: prefill the (left-padded)
prompts into a KV cache of ``P - 1`` slots (`decoder_start`; an encoder-decoder encodes
them instead, `wasp_jax.models.t5_sampler`), then run the shared decode loop
(`wasp_jax.models.decode`), which stops as soon as every row has hit EOS, a stop token or
its length limit. How a row picks its next token is a `wasp_jax.models.next_token` rule.

Prefix sharing: the ``B = Bp * G`` sample rows come in ``Bp`` groups of ``G`` consecutive
rows, one group per prompt. A prompt is prefilled once however many continuations it gets,
and its cache is stored once and read once per decode step, shared by its group's rows
(``layers.gqa_attention`` with a prefix); each row keeps only its own ``N``-slot cache of
new tokens. Decoding thus reads the prompt's keys and values ``G`` times less than a
per-row copy would.

Shapes (all static per compile): ``Bp`` prompt rows, ``P`` prompt slots, ``G`` rows per
prompt, ``N`` new-token slots. The prefill drops its logits (so XLA never computes the LM
head over the whole prompt); the first decode step feeds every row its last prompt token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from wasp_jax.models import layers
from wasp_jax.models import sharding as shd
from wasp_jax.models.decode import (
    Prefill,
    PromptBatch,
    SamplingControls,
    constrain_cache,
    decode,
)
from wasp_jax.models.next_token import choose_tokens, next_token_rule, top_p_keep

__all__ = [
    "SamplerShape",
    "StartHook",
    "build_sampler",
    "choose_tokens",
    "decoder_start",
    "top_p_keep",
]


@dataclasses.dataclass(frozen=True)
class SamplerShape:
    """Static shapes and strategy of one compiled sampler (its jit cache key)."""

    prompt_rows: int  # Bp
    prompt_len: int  # P
    group: int  # G, sample rows per prompt row
    new_tokens: int  # N
    greedy: bool
    top_k: int
    use_top_p: bool

    @property
    def rows(self) -> int:
        """B = Bp * G sample rows."""
        return self.prompt_rows * self.group


class StartHook(Protocol):
    """Turns the prompts into the decode loop's first inputs (`decoder_start`, or
    `wasp_jax.models.t5_sampler.encoder_decoder_start` for an encoder-decoder)."""

    def __call__(
        self, model, per_layer, batch: PromptBatch, shape: SamplerShape, *, cache_dtype, mesh
    ) -> Prefill: ...


def decoder_start(
    model, per_layer, batch: PromptBatch, shape: SamplerShape, *, cache_dtype, mesh
) -> Prefill:
    """Prefills a decoder's prompts once per prompt row; the rows then share that prefix.

    The first ``P - 1`` prompt slots go through the model (its logits dropped); their
    cache becomes the shared prefix of the prompt's ``G`` rows. Each row gets its own
    ``N``-slot cache of new tokens (slot i = step i), and the first step feeds every row
    its prompt's last token.
    """
    bp, p, grp, n, b = (
        shape.prompt_rows,
        shape.prompt_len,
        shape.group,
        shape.new_tokens,
        shape.rows,
    )
    pre_mask = batch.mask[:, : p - 1]
    cache = constrain_cache(model.init_cache(bp, p - 1, dtype=cache_dtype), mesh)
    _, cache = model(
        batch.tokens[:, : p - 1],
        batch.positions[:, : p - 1],
        cache,
        jnp.int32(0),
        pre_mask,
        per_layer=per_layer,
    )
    prefix = layers.prefix_from_cache(cache, pre_mask)
    cache = constrain_cache(model.init_cache(b, n, dtype=cache_dtype), mesh)
    kv_mask = jnp.ones((b, n), bool)

    def step(token, position, cache, i):
        return model(
            token[:, None], position[:, None], cache, i, kv_mask, prefix=prefix, per_layer=per_layer
        )

    token = jnp.repeat(batch.tokens[:, p - 1], grp)
    position = jnp.repeat(batch.positions[:, p - 1], grp)
    return Prefill(token, position, cache, step)


def build_sampler(
    graphdef: nnx.GraphDef,
    *,
    shape: SamplerShape,
    mesh: jax.sharding.Mesh,
    state_shardings,
    layer_shardings,
    start: StartHook = decoder_start,
    cache_dtype=jnp.float32,
    on_trace: Callable[[SamplerShape], None] | None = None,
):
    """Returns the jitted sampler for one `SamplerShape`.

    Args:
      graphdef: the model's static graph (`wasp_jax.models.sharding.shard_model`).
      shape: the bucket's static shapes and strategy.
      mesh: the model's mesh.
      state_shardings, layer_shardings: shardings of the parameter state and of the
        per-layer weights (`wasp_jax.models.sharding.unstack_layers`; empty for a model
        that scans its stacked weights).
      start: the start hook (`StartHook`); `decoder_start` for decoders.
      cache_dtype: dtype of the KV caches.
      on_trace: called with `shape` whenever the sampler is traced (compile counting).

    The returned function takes ``(state, per_layer, batch: PromptBatch, controls:
    SamplingControls)`` and returns a dict with ``tokens`` int32 [B, N], ``lengths`` int32
    [B] (tokens before EOS, stop token included), ``logprobs`` float32 [B, N] (of the
    chosen tokens under the raw model), ``steps`` (loop iterations run).
    """
    if start is decoder_start and shape.prompt_len < 2:
        raise ValueError(f"prompt bucket must hold at least 2 slots, got {shape.prompt_len}")

    def run(state, per_layer, batch: PromptBatch, controls: SamplingControls):
        if on_trace is not None:
            on_trace(shape)
        model = nnx.merge(graphdef, state)
        prefill = start(model, per_layer, batch, shape, cache_dtype=cache_dtype, mesh=mesh)
        rule = next_token_rule(
            greedy=shape.greedy,
            top_k=shape.top_k,
            use_top_p=shape.use_top_p,
            temperature=controls.temperature,
            top_p=controls.top_p,
        )
        return decode(prefill, batch, rule, controls, shape.new_tokens)

    in_sh, out_sh = _shardings(mesh, shape, state_shardings, layer_shardings)
    return jax.jit(run, in_shardings=in_sh, out_shardings=out_sh)


def _shardings(mesh, shape: SamplerShape, state_shardings, layer_shardings):
    """in_shardings and out_shardings of a sampler: prompts and rows over ``"data"``."""
    rep = shd.replicated(mesh)
    prompt_sh = shd.batch_sharding(mesh, (shape.prompt_rows, shape.prompt_len))
    row_sh = shd.batch_sharding(mesh, (shape.rows,))
    rows2_sh = shd.batch_sharding(mesh, (shape.rows, shape.new_tokens))
    batch_sh = PromptBatch(prompt_sh, prompt_sh, prompt_sh, row_sh, row_sh)
    controls_sh = SamplingControls(rep, rep, rep, rep, rep, rep)
    out_sh = dict(tokens=rows2_sh, lengths=row_sh, logprobs=rows2_sh, steps=rep)
    return (state_shardings, layer_shardings, batch_sh, controls_sh), out_sh
