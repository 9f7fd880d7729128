"""The decode loop shared by every generating model: its state, its step and its inputs.

A sampler (`wasp_jax.models.sampler.build_sampler`) runs in one compiled program: a *start
hook* turns the prompts into a `Prefill` (each row's first input token and position, an
empty per-row cache and a `StepFn` that runs the model on one token per row), then
`decode` repeats `decode_step` in a `lax.while_loop` until every row has hit EOS, a stop
token or its length limit. The decoders' start hook prefills the prompts into a shared
prefix cache (`wasp_jax.models.sampler.decoder_start`); the encoder-decoder's encodes
them once (`wasp_jax.models.t5_sampler.encoder_decoder_start`). The loop itself, the
randomness and the bookkeeping are the same for both.

Randomness is per row: row ``r`` draws step ``i`` from ``fold_in(row_keys[r], i)``, so a
sample depends only on its own key, never on batch size, padding or bucketing.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from flax import struct

from wasp_jax.models import sharding as shd
from wasp_jax.models.next_token import NextTokenRule

_NEG_INF = -jnp.inf


@struct.dataclass
class PromptBatch:
    """The prompts of one sampler call and its sample rows (``B = Bp * G``).

    Attributes:
      tokens: int32 [Bp, P], left-padded prompts.
      positions: int32 [Bp, P], 0 at each prompt's first real token.
      mask: bool [Bp, P], True on real tokens.
      row_keys: typed PRNG keys [B], one per sample row.
      row_active: bool [B], False on padding rows (they start done).
    """

    tokens: jax.Array
    positions: jax.Array
    mask: jax.Array
    row_keys: jax.Array
    row_active: jax.Array


@struct.dataclass
class SamplingControls:
    """The traced sampling settings of one sampler call (scalars and vocabulary tables).

    Attributes:
      temperature: float scalar > 0.
      top_p: float scalar in (0, 1].
      min_new: int32 scalar; EOS is suppressed before this many new tokens.
      max_new: int32 scalar; most new tokens per row.
      eos_table: bool [V], the EOS tokens.
      stop_table: bool [V], tokens that end a row (kept in its output).
    """

    temperature: jax.Array
    top_p: jax.Array
    min_new: jax.Array
    max_new: jax.Array
    eos_table: jax.Array
    stop_table: jax.Array


@struct.dataclass
class SamplingState:
    """The decode loop's carry.

    Attributes:
      step: int32 scalar, the step about to run (= new tokens written so far).
      token: int32 [B], each row's input token of this step.
      position: int32 [B], its position, or None where the model does not use positions.
      cache: the model's per-row cache (any pytree).
      done: bool [B], rows that have finished.
      tokens: int32 [B, N], the chosen tokens (0 after a row is done).
      lengths: int32 [B], tokens before EOS (a stop token included).
      logprobs: float32 [B, N], log-probabilities of the chosen tokens under the raw model.
      row_keys: typed PRNG keys [B].
    """

    step: jax.Array
    token: jax.Array
    position: jax.Array | None
    cache: Any
    done: jax.Array
    tokens: jax.Array
    lengths: jax.Array
    logprobs: jax.Array
    row_keys: jax.Array


class StepFn(Protocol):
    """Runs the model on one token per row: ``(token [B], position [B] | None, cache, step)
    -> (logits float32 [B, 1, V'], new cache)``, writing the token to cache slot ``step``."""

    def __call__(
        self, token: jax.Array, position: jax.Array | None, cache: Any, step: jax.Array
    ) -> tuple[jax.Array, Any]: ...


class Prefill(NamedTuple):
    """What a start hook hands the decode loop (see the module docstring)."""

    token: jax.Array
    position: jax.Array | None
    cache: Any
    step: StepFn


def constrain_cache(cache: Any, mesh: jax.sharding.Mesh) -> Any:
    """Pins every ``[L, B, S, Hkv, Dh]`` cache array to `sharding.cache_sharding`."""
    return jax.tree.map(
        lambda c: jax.lax.with_sharding_constraint(c, shd.cache_sharding(mesh, c.shape)), cache
    )


def initial_state(prefill: Prefill, batch: PromptBatch, new_tokens: int) -> SamplingState:
    """The loop's state before step 0: nothing written, padding rows already done."""
    b = batch.row_keys.shape[0]
    return SamplingState(
        step=jnp.int32(0),
        token=prefill.token,
        position=prefill.position,
        cache=prefill.cache,
        done=~batch.row_active,
        tokens=jnp.zeros((b, new_tokens), jnp.int32),
        lengths=jnp.zeros((b,), jnp.int32),
        logprobs=jnp.zeros((b, new_tokens), jnp.float32),
        row_keys=batch.row_keys,
    )


def decode_step(
    state: SamplingState, step_fn: StepFn, rule: NextTokenRule, controls: SamplingControls
) -> SamplingState:
    """One step of every row: run the model, pick the next tokens, record them."""
    i = state.step
    logits, cache = step_fn(state.token, state.position, state.cache, i)
    vocab = controls.eos_table.shape[0]
    logits = logits[:, 0, :vocab].astype(jnp.float32)
    logits = jnp.where(controls.eos_table[None] & (i < controls.min_new), _NEG_INF, logits)
    step_keys = jax.vmap(jax.random.fold_in, (0, None))(state.row_keys, i)
    new = rule(step_keys, logits)
    done = state.done
    logprob = jnp.take_along_axis(jax.nn.log_softmax(logits), new[:, None], axis=-1)[:, 0]
    is_eos = controls.eos_table[new]
    return SamplingState(
        step=i + 1,
        token=new,
        position=None if state.position is None else state.position + 1,
        cache=cache,
        done=done | is_eos | controls.stop_table[new] | (i + 1 >= controls.max_new),
        tokens=state.tokens.at[:, i].set(jnp.where(done, 0, new)),
        lengths=jnp.where(done | is_eos, state.lengths, i + 1),
        logprobs=state.logprobs.at[:, i].set(jnp.where(done, 0.0, logprob)),
        row_keys=state.row_keys,
    )


def decode(
    prefill: Prefill,
    batch: PromptBatch,
    rule: NextTokenRule,
    controls: SamplingControls,
    new_tokens: int,
) -> dict[str, jax.Array]:
    """Runs `decode_step` until every row is done or ``controls.max_new`` steps have run.

    Returns:
      ``tokens`` int32 [B, N], ``lengths`` int32 [B], ``logprobs`` float32 [B, N] and
      ``steps`` (loop iterations run).
    """

    def cond(state: SamplingState):
        return (state.step < controls.max_new) & ~jnp.all(state.done)

    def body(state: SamplingState) -> SamplingState:
        return decode_step(state, prefill.step, rule, controls)

    final = jax.lax.while_loop(cond, body, initial_state(prefill, batch, new_tokens))
    return dict(
        tokens=final.tokens, lengths=final.lengths, logprobs=final.logprobs, steps=final.step
    )
