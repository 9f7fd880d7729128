"""The start hook of encoder-decoder models (T5 / Flan-T5) for the shared decode loop.

Same interface, shapes and randomness as the decoders' sampler (`wasp_jax.models.sampler`),
so `wasp_jax.models.generator.Generator` drives both; only the start differs. The ``Bp``
(left-padded) prompts run through the encoder once, and its output is projected once into
every decoder layer's cross-attention keys and values, ``[L, Bp, H, P, Dh]``; the
``B = Bp * G`` sample rows come in groups of ``G`` per prompt and all read their prompt's
single copy (the encoder-decoder form of prefix sharing). Each row's decoder starts from
the decoder start token in slot 0 of its own ``N``-slot self-attention cache, so step ``i``
reads slots ``[0, i]``.
"""

from __future__ import annotations

import jax.numpy as jnp

from wasp_jax.models.decode import Prefill, PromptBatch, constrain_cache


def encoder_decoder_start(
    model, per_layer, batch: PromptBatch, shape, *, cache_dtype, mesh
) -> Prefill:
    """Encodes the prompts once; every row starts from the decoder start token.

    ``per_layer`` is unused (the encoder-decoder scans its stacked weights) and so are the
    prompt positions (T5's positions are relative); the steps carry no position.
    """
    del per_layer
    cross = model.cross_kv(model.encode(batch.tokens, batch.mask))
    cache = constrain_cache(model.init_cache(shape.rows, shape.new_tokens, dtype=cache_dtype), mesh)

    def step(token, position, cache, i):
        del position
        return model.decode(token[:, None], cache, i, cross, batch.mask)

    token = jnp.full((shape.rows,), model.config.decoder_start_id, jnp.int32)
    return Prefill(token, None, cache, step)
