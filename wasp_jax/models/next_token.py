"""How the next token of every row is picked from its logits: the sampling rules.

A `NextTokenRule` maps ``(keys [B], logits float32 [B, V]) -> tokens int32 [B]``; the decode
loop (`wasp_jax.models.decode`) calls one once per step with each row's key already folded
with the step. `Greedy` takes the argmax; `Sample` draws from the temperature-scaled
softmax, optionally cut to the ``top_k`` most likely tokens and/or to the nucleus of mass
``top_p``. `next_token_rule` picks the rule of a sampler's static strategy. Rules are pytrees
(`flax.struct` dataclasses): their traced parameters (temperature, top_p) are leaves and
their static switches are part of the tree structure, so a rule can cross a jit boundary.
"""

from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp
from flax import struct

_NEG_INF = -jnp.inf


class NextTokenRule(Protocol):
    """Picks each row's next token: ``rule(keys [B], logits float32 [B, V]) -> int32 [B]``."""

    def __call__(self, keys: jax.Array, logits: jax.Array) -> jax.Array: ...


@struct.dataclass
class Greedy:
    """The most likely token of every row (keys unused)."""

    def __call__(self, keys: jax.Array, logits: jax.Array) -> jax.Array:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@struct.dataclass
class Sample:
    """A draw from ``softmax(logits / temperature)``, optionally filtered (see `choose_tokens`).

    Attributes:
      temperature: float scalar > 0 (may be traced).
      top_p: nucleus mass in (0, 1] (may be traced); used only when ``use_top_p``.
      top_k: keep the k most likely tokens; 0 = off (static).
      use_top_p: apply the nucleus filter (static).
    """

    temperature: jax.Array
    top_p: jax.Array
    top_k: int = struct.field(pytree_node=False, default=0)
    use_top_p: bool = struct.field(pytree_node=False, default=False)

    def __call__(self, keys: jax.Array, logits: jax.Array) -> jax.Array:
        return choose_tokens(
            keys,
            logits,
            greedy=False,
            top_k=self.top_k,
            use_top_p=self.use_top_p,
            temperature=self.temperature,
            top_p=self.top_p,
        )


def next_token_rule(
    *, greedy: bool, top_k: int, use_top_p: bool, temperature: jax.Array, top_p: jax.Array
) -> NextTokenRule:
    """The rule of one sampling strategy: `Greedy` if ``greedy``, else `Sample`."""
    if greedy:
        return Greedy()
    return Sample(temperature, top_p, top_k=top_k, use_top_p=use_top_p)


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
            kth = min(top_k, k)  # top_k beyond the vocabulary keeps it all
            full = jnp.where(scaled < vals[:, kth - 1 : kth], _NEG_INF, scaled)
        full = jax.nn.softmax(full, axis=-1)
        return _inverse_cdf(jnp.where(top_p_keep(full, top_p), full, 0.0), u)

    return jax.lax.cond(jnp.all(covered), among_candidates, over_vocabulary).astype(jnp.int32)


def _inverse_cdf(weights: jax.Array, u: jax.Array) -> jax.Array:
    """Index drawn from each row of ``weights`` [B, C] (non-negative) by ``u`` [B] in (0, 1)."""
    cdf = jnp.cumsum(weights, axis=-1)
    target = u * cdf[:, -1]
    pick = jnp.sum(cdf < target[:, None], axis=-1)
    return jnp.minimum(pick, weights.shape[-1] - 1).astype(jnp.int32)
