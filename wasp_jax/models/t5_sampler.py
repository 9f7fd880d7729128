"""The jitted sampling loop of encoder-decoder models (T5 / Flan-T5): the device side.

Same interface, shapes and randomness as the decoders' sampler (`wasp_jax.models.sampler`,
whose token choice it reuses), so `wasp_jax.models.generator.Generator` drives both. What
differs is the prompt: the ``Bp`` (left-padded) prompts run through the encoder once, and
its output is projected once into every decoder layer's cross-attention keys and values,
``[L, Bp, H, P, Dh]``; the ``B = Bp * G`` sample rows come in groups of ``G`` per prompt
and all read their prompt's single copy (the encoder-decoder form of prefix sharing).
Each row's decoder starts from the decoder start token in slot 0 of its own ``N``-slot
self-attention cache, so step ``i`` reads slots ``[0, i]``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from wasp_jax.models import sharding as shd
from wasp_jax.models.sampler import SamplerShape, choose_tokens

_NEG_INF = -jnp.inf


def build_seq2seq_sampler(
    graphdef: nnx.GraphDef,
    state_shardings,
    layer_shardings,
    mesh: jax.sharding.Mesh,
    shape: SamplerShape,
    *,
    cache_dtype=jnp.float32,
    on_trace: Callable[[SamplerShape], None] | None = None,
):
    """The jitted sampler of one `SamplerShape`, with `sampler.build_sampler`'s signature.

    ``layers`` is unused (the encoder-decoder scans its stacked weights) and
    ``prompt_positions`` too (T5's positions are relative). Returns ``tokens`` int32 [B, N],
    ``lengths`` int32 [B], ``logprobs`` float32 [B, N] and ``steps``.
    """
    bp, n = shape.prompt_rows, shape.new_tokens
    b = shape.rows

    def run(
        state,
        layers,
        prompt_tokens,
        prompt_positions,
        prompt_mask,
        row_keys,
        row_active,
        temperature,
        top_p,
        min_new,
        max_new,
        eos_table,
        stop_table,
    ):
        del layers, prompt_positions
        if on_trace is not None:
            on_trace(shape)
        model = nnx.merge(graphdef, state)
        cross = model.cross_kv(model.encode(prompt_tokens, prompt_mask))
        cache = model.init_cache(b, n, dtype=cache_dtype)
        cache = jax.tree.map(
            lambda c: jax.lax.with_sharding_constraint(c, shd.cache_sharding(mesh, c.shape)), cache
        )
        vocab = eos_table.shape[0]
        start = jnp.full((b,), model.config.decoder_start_id, jnp.int32)
        carry = dict(
            i=jnp.int32(0),
            tok=start,
            cache=cache,
            done=~row_active,
            tokens=jnp.zeros((b, n), jnp.int32),
            lengths=jnp.zeros((b,), jnp.int32),
            logprobs=jnp.zeros((b, n), jnp.float32),
        )

        def cond(c):
            return (c["i"] < max_new) & ~jnp.all(c["done"])

        def body(c):
            i = c["i"]
            logits, cache = model.decode(c["tok"][:, None], c["cache"], i, cross, prompt_mask)
            logits = logits[:, 0, :vocab].astype(jnp.float32)
            logits = jnp.where(eos_table[None] & (i < min_new), _NEG_INF, logits)
            step_keys = jax.vmap(jax.random.fold_in, (0, None))(row_keys, i)
            new = choose_tokens(
                step_keys,
                logits,
                greedy=shape.greedy,
                top_k=shape.top_k,
                use_top_p=shape.use_top_p,
                temperature=temperature,
                top_p=top_p,
            )
            done = c["done"]
            logprob = jnp.take_along_axis(jax.nn.log_softmax(logits), new[:, None], axis=-1)[:, 0]
            is_eos = eos_table[new]
            return dict(
                i=i + 1,
                tok=new,
                cache=cache,
                done=done | is_eos | stop_table[new] | (i + 1 >= max_new),
                tokens=c["tokens"].at[:, i].set(jnp.where(done, 0, new)),
                lengths=jnp.where(done | is_eos, c["lengths"], i + 1),
                logprobs=c["logprobs"].at[:, i].set(jnp.where(done, 0.0, logprob)),
            )

        final = jax.lax.while_loop(cond, body, carry)
        result = {k: final[k] for k in ("tokens", "lengths", "logprobs")}
        result["steps"] = final["i"]
        return result

    rep = shd.replicated(mesh)
    prompt_sh = shd.batch_sharding(mesh, (bp, shape.prompt_len))
    row_sh = shd.batch_sharding(mesh, (b,))
    rows2_sh = shd.batch_sharding(mesh, (b, n))
    out_sh = dict(tokens=rows2_sh, lengths=row_sh, logprobs=rows2_sh, steps=rep)
    in_sh = (state_shardings, layer_shardings, prompt_sh, prompt_sh, prompt_sh, row_sh, row_sh)
    in_sh += (rep,) * 6
    return jax.jit(run, in_shardings=in_sh, out_shardings=out_sh)
