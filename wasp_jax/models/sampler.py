"""The jitted sampling loop behind `Generator` (`wasp_jax.models.generator`): the device side.

One compiled program per shape bucket does: prefill the (left-padded) prompts into a KV
cache of ``P - 1`` slots, then decode in a `lax.while_loop` that stops as soon as every row
has hit EOS, a stop token or its length limit.

Prefix sharing: the ``B = Bp * G`` sample rows come in ``Bp`` groups of ``G`` consecutive
rows, one group per prompt. A prompt is prefilled once however many continuations it gets,
and its cache is stored once and read once per decode step, shared by its group's rows
(``layers.gqa_attention`` with a prefix); each row keeps only its own ``N``-slot cache of
new tokens. Decoding thus reads the prompt's keys and values ``G`` times less than a
per-row copy would.

Shapes (all static per compile): ``Bp`` prompt rows, ``P`` prompt slots, ``G`` rows per
prompt, ``N`` new-token slots. The prefill drops its logits (so XLA never computes the LM
head over the whole prompt); the first decode step feeds every row its last prompt token.

Randomness is per row: row ``r`` draws step ``i`` from ``fold_in(row_keys[r], i)``, so a
sample depends only on its own key, never on batch size, padding or bucketing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from wasp_jax.models import layers as L
from wasp_jax.models import sharding as shd

_NEG_INF = -jnp.inf


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


_TOP_P_CANDIDATES = 256


def top_p_keep(probs: jax.Array, top_p: jax.Array) -> jax.Array:
    """Nucleus mask: the smallest top set of each row whose mass reaches `top_p`.

    Fast path: the nucleus usually lies within the row's 256 most likely tokens, whose sorted
    cumulative mass gives the threshold exactly (`lax.top_k` costs a few passes over the
    vocabulary, a full sort far more). Only when some row's nucleus is wider does the batch
    fall back to bisecting the threshold over the whole vocabulary (`lax.cond`, so the
    fallback costs nothing when it is not taken). Tokens tied with the threshold are kept.

    Args:
      probs: float32 [B, V], rows summing to 1.
      top_p: float scalar in (0, 1].

    Returns:
      bool [B, V]; every row keeps at least its most likely token.
    """
    probs = probs.astype(jnp.float32)
    k = min(_TOP_P_CANDIDATES, probs.shape[-1])
    top = jax.lax.top_k(probs, k)[0]  # [B, k], descending
    mass = jnp.cumsum(top, axis=-1)
    covered = mass[:, -1] >= top_p
    last = jnp.minimum(jnp.sum(mass < top_p, axis=-1), k - 1)
    fast = jnp.take_along_axis(top, last[:, None], axis=-1)[:, 0]
    threshold = jax.lax.cond(
        jnp.all(covered),
        lambda: fast,
        lambda: jnp.where(covered, fast, _bisect_threshold(probs, top_p)),
    )
    return probs >= threshold[:, None]


def _bisect_threshold(probs: jax.Array, top_p: jax.Array) -> jax.Array:
    """Largest t with mass(p >= t) >= top_p per row [B], by bisection on the float bits.

    The int32 bit patterns of non-negative floats are ordered like the floats, so 32
    halvings give the exact threshold.
    """
    bits = jax.lax.bitcast_convert_type(probs, jnp.int32)
    lo = jnp.zeros(probs.shape[:1], jnp.int32)  # mass(bits >= lo) >= top_p
    hi = bits.max(axis=-1) + 1  # mass(bits >= hi) == 0 < top_p

    def halve(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        mass = jnp.where(bits >= mid[:, None], probs, 0.0).sum(axis=-1)
        ok = mass >= top_p
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, 32, halve, (lo, hi))
    return jax.lax.bitcast_convert_type(lo, jnp.float32)


def choose_tokens(
    keys: jax.Array,
    logits: jax.Array,
    *,
    greedy: bool,
    top_k: int,
    use_top_p: bool,
    temperature: jax.Array,
    top_p: jax.Array,
) -> jax.Array:
    """Picks the next token of every row.

    Sampling is by inverse CDF: one uniform draw per row, located in the cumulative mass of
    the kept tokens. With top-k or top-p the kept tokens are usually among the row's most
    likely ``max(top_k, 256)``, so the draw runs over those candidates only; a batch where some
    row's nucleus is wider falls back to the whole vocabulary (`lax.cond`, so the fallback
    costs nothing when not taken). Either way the token follows exactly the filtered,
    renormalised distribution. (A Gumbel-max draw needs a random number per vocabulary
    entry, which cost more than the rest of a decode step's sampling on a CPU.)

    Args:
      keys: typed PRNG keys [B] (one per row, already folded with the step).
      logits: float32 [B, V].
      greedy: argmax (static).
      top_k: keep the k most likely tokens; 0 = off (static).
      use_top_p: apply the nucleus filter (static; off when top_p == 1).
      temperature: float scalar > 0.
      top_p: float scalar in (0, 1].

    Returns:
      int32 [B].
    """
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    vocab = logits.shape[-1]
    scaled = logits.astype(jnp.float32) / temperature
    # In (0, 1): the located token always has positive mass.
    u = jax.vmap(lambda k: jax.random.uniform(k, minval=jnp.finfo(jnp.float32).tiny))(keys)
    if not top_k and not use_top_p:
        return _inverse_cdf(jax.nn.softmax(scaled, axis=-1), u)
    k = min(top_k or _TOP_P_CANDIDATES, vocab)
    if use_top_p and top_k:
        k = min(max(top_k, _TOP_P_CANDIDATES), vocab)
    vals, idx = jax.lax.top_k(scaled, k)  # descending
    if top_k:
        in_k = jnp.arange(k) < top_k
        vals = jnp.where(in_k[None], vals, _NEG_INF)
        # The top-k distribution lives on the candidates alone.
        probs = jax.nn.softmax(vals, axis=-1)
    else:
        probs = jnp.exp(vals - jax.nn.logsumexp(scaled, axis=-1, keepdims=True))
    if not use_top_p:
        return jnp.take_along_axis(idx, _inverse_cdf(probs, u)[:, None], axis=-1)[:, 0]
    mass = jnp.cumsum(probs, axis=-1)
    covered = mass[:, -1] >= top_p

    def among_candidates():
        last = jnp.minimum(jnp.sum(mass < top_p, axis=-1), k - 1)
        threshold = jnp.take_along_axis(probs, last[:, None], axis=-1)
        keep = jnp.where(probs >= threshold, probs, 0.0)
        return jnp.take_along_axis(idx, _inverse_cdf(keep, u)[:, None], axis=-1)[:, 0]

    def over_vocabulary():
        full = scaled
        if top_k:
            full = jnp.where(scaled < vals[:, top_k - 1 : top_k], _NEG_INF, scaled)
        full = jax.nn.softmax(full, axis=-1)
        return _inverse_cdf(jnp.where(top_p_keep(full, top_p), full, 0.0), u)

    return jax.lax.cond(jnp.all(covered), among_candidates, over_vocabulary).astype(jnp.int32)


def _inverse_cdf(weights: jax.Array, u: jax.Array) -> jax.Array:
    """Index drawn from each row of ``weights`` [B, C] (non-negative) by ``u`` [B] in (0, 1)."""
    cdf = jnp.cumsum(weights, axis=-1)
    target = u * cdf[:, -1]
    pick = jnp.sum(cdf < target[:, None], axis=-1)
    return jnp.minimum(pick, weights.shape[-1] - 1).astype(jnp.int32)


def build_sampler(
    graphdef: nnx.GraphDef,
    state_shardings,
    layer_shardings,
    mesh: jax.sharding.Mesh,
    shape: SamplerShape,
    *,
    cache_dtype=jnp.float32,
    on_trace: Callable[[SamplerShape], None] | None = None,
):
    """Returns the jitted sampler for one `SamplerShape`.

    The returned function takes ``(state, layers, prompt_tokens [Bp,P], prompt_positions [Bp,P],
    prompt_mask [Bp,P], row_keys [B], row_active [B], temperature, top_p,
    min_new, max_new, eos_table [V], stop_table [V])`` and returns a dict with ``tokens``
    int32 [B, N], ``lengths`` int32 [B] (tokens before EOS, stop token included),
    ``logprobs`` float32 [B, N] (of the chosen tokens under the raw model), ``steps`` (loop
    iterations run).

    Longer than most functions on purpose: the prefill, the loop condition and the decode
    step are closures of one traced program that share the bucket's static sizes and the
    traced arguments, which helper functions would have to thread through a dozen
    parameters each.
    """
    bp, p, grp, n = shape.prompt_rows, shape.prompt_len, shape.group, shape.new_tokens
    b = shape.rows
    if p < 2:
        raise ValueError(f"prompt bucket must hold at least 2 slots, got {p}")

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
        if on_trace is not None:
            on_trace(shape)
        model = nnx.merge(graphdef, state)
        pre_mask = prompt_mask[:, : p - 1]
        cache = _constrain_cache(model.init_cache(bp, p - 1, dtype=cache_dtype), mesh)
        _, cache = model(
            prompt_tokens[:, : p - 1],
            prompt_positions[:, : p - 1],
            cache,
            jnp.int32(0),
            pre_mask,
            layers=layers,
        )
        prefix = L.prefix_from_cache(cache, pre_mask)
        # Each row's own cache holds only its new tokens (slot i = step i).
        cache = _constrain_cache(model.init_cache(b, n, dtype=cache_dtype), mesh)
        kv_mask = jnp.ones((b, n), bool)
        tok = jnp.repeat(prompt_tokens[:, p - 1], grp)
        pos = jnp.repeat(prompt_positions[:, p - 1], grp)
        vocab = eos_table.shape[0]

        carry = dict(
            i=jnp.int32(0),
            tok=tok,
            pos=pos,
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
            logits, cache = model(
                c["tok"][:, None],
                c["pos"][:, None],
                c["cache"],
                i,
                kv_mask,
                prefix=prefix,
                layers=layers,
            )
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
            out = dict(
                i=i + 1,
                tok=new,
                pos=c["pos"] + 1,
                cache=cache,
                done=done | is_eos | stop_table[new] | (i + 1 >= max_new),
                tokens=c["tokens"].at[:, i].set(jnp.where(done, 0, new)),
                lengths=jnp.where(done | is_eos, c["lengths"], i + 1),
                logprobs=c["logprobs"].at[:, i].set(jnp.where(done, 0.0, logprob)),
            )
            return out

        final = jax.lax.while_loop(cond, body, carry)
        result = {k: final[k] for k in ("tokens", "lengths", "logprobs")}
        result["steps"] = final["i"]
        return result

    rep = shd.replicated(mesh)
    prompt_sh = shd.batch_sharding(mesh, (bp, p))
    row_sh = shd.batch_sharding(mesh, (b,))
    rows2_sh = shd.batch_sharding(mesh, (b, n))
    out_sh = dict(tokens=rows2_sh, lengths=row_sh, logprobs=rows2_sh, steps=rep)
    in_sh = (state_shardings, layer_shardings, prompt_sh, prompt_sh, prompt_sh, row_sh, row_sh)
    in_sh += (rep,) * 6
    return jax.jit(run, in_shardings=in_sh, out_shardings=out_sh)


def _constrain_cache(cache, mesh):
    return jax.tree.map(
        lambda c: jax.lax.with_sharding_constraint(c, shd.cache_sharding(mesh, c.shape)), cache
    )
