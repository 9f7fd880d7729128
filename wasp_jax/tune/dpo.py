"""The DPO objective for a decoder with LoRA adapters, and the token batches it reads.

DPO (direct preference optimisation) raises the policy's log-likelihood ratio to a frozen
reference model on the preferred completion relative to the dispreferred one:

    loss = -log sigmoid(beta * ((pi(y+) - ref(y+)) - (pi(y-) - ref(y-))))

where ``pi(y)`` / ``ref(y)`` are the summed log-probabilities of the completion's tokens
given the prompt. The reference is the round's starting weights, i.e. the same model with
the adapters at zero, so its log-probabilities are computed once before training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from wasp_jax.kernels import padding
from wasp_jax.models import lora


@dataclasses.dataclass(frozen=True)
class TokenRows:
    """Right-padded prompt + completion rows.

    Attributes:
      tokens: int32 [N, T].
      mask: bool [N, T], True on real tokens.
      target: bool [N, T], True on the completion's tokens (the ones scored).
      select: int32 [N, K], the positions whose logits predict them (position j predicts
        token j + 1), K the longest completion rounded up to a power of two.
      keep: bool [N, K], False on the filler slots of shorter completions.
    """

    tokens: np.ndarray
    mask: np.ndarray
    target: np.ndarray
    select: np.ndarray
    keep: np.ndarray


def token_rows(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], length: int = 0
) -> TokenRows:
    """Packs (prompt ids, completion ids) rows, right-padded with 0 to `length` (0 = the
    longest row rounded up to the project's bucket sizes, so a round compiles few shapes).

    Raises:
      ValueError: an empty completion, or a row longer than `length`.
    """
    if len(prompts) != len(completions):
        raise ValueError("one completion per prompt")
    if any(len(c) == 0 for c in completions):
        raise ValueError("every completion needs at least one token")
    longest = max((len(p) + len(c) for p, c in zip(prompts, completions, strict=True)), default=1)
    t = length or padding.bucket_prompt_len(longest)
    if longest > t:
        raise ValueError(f"a row has {longest} tokens, more than the length {t}")
    n = len(prompts)
    k = min(padding.bucket_pow2(max((len(c) for c in completions), default=1)), t - 1)
    tokens = np.zeros((n, t), np.int32)
    mask, target = np.zeros((n, t), bool), np.zeros((n, t), bool)
    select, keep = np.zeros((n, k), np.int32), np.zeros((n, k), bool)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        row = [*p, *c]
        tokens[i, : len(row)] = row
        mask[i, : len(row)] = True
        target[i, len(p) : len(row)] = True
        if not p:
            raise ValueError("every row needs a prompt of at least one token")
        select[i, : len(c)] = np.arange(len(p) - 1, len(row) - 1)
        keep[i, : len(c)] = True
    return TokenRows(tokens, mask, target, select, keep)


def sequence_logprobs(model, per_layer, tokens, mask, select, keep) -> jax.Array:
    """[N] summed log-probabilities of each row's completion tokens given what precedes them.

    Args:
      model: a decoder (``nnx.merge`` of a generator's graph and state).
      per_layer: stacked layer weights (name -> [L, ...]; `LoraWeight` for adapted ones), run
        with one ``lax.scan``.
      tokens, mask: as in `TokenRows`.
      select, keep: as in `TokenRows`: only the positions that predict a completion token go
        through the output head (for a 262k vocabulary the costliest product).
    """
    n, t = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (n, t))
    cache = model.init_cache(n, t)
    logits, _ = model(
        tokens, positions, cache, jnp.int32(0), mask, per_layer=per_layer, last_only=select
    )
    logits = logits.astype(jnp.float32)
    nxt = jnp.take_along_axis(tokens, select + 1, axis=1)  # position j predicts token j + 1
    picked = jnp.take_along_axis(logits, nxt[..., None], axis=-1)[..., 0]
    tok = picked - jax.nn.logsumexp(logits, axis=-1)
    return jnp.sum(jnp.where(keep, tok, 0.0), axis=-1)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """(mean DPO loss, metrics) over pairs; each argument is [P] summed log-probabilities.

    Metrics: ``reward_accuracy`` (share of pairs whose implicit reward prefers the chosen
    row) and ``reward_margin`` (mean of ``(pi(y+) - ref(y+)) - (pi(y-) - ref(y-))``).
    """
    diff = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    loss = -jnp.mean(jax.nn.log_sigmoid(beta * diff))
    metrics = {
        "reward_accuracy": jnp.mean((diff > 0).astype(jnp.float32)),
        "reward_margin": jnp.mean(diff),
    }
    return loss, metrics


def pair_loss(adapters, graphdef, state, stacked, batch, *, scale: float, beta: float):
    """DPO loss of one batch: ``batch`` holds ``tokens``/``mask`` [2P, T] and ``select``/
    ``keep`` [2P, K] (the P chosen rows, then their P rejected rows; `TokenRows`) and ``ref``
    [2P], the reference log-probs."""
    model = nnx.merge(graphdef, state)
    weights = lora.wrap(stacked, adapters, scale)
    lp = sequence_logprobs(
        model, weights, batch["tokens"], batch["mask"], batch["select"], batch["keep"]
    )
    p = lp.shape[0] // 2
    ref = batch["ref"]
    return dpo_loss(lp[:p], lp[p:], ref[:p], ref[p:], beta)


def make_train_step(graphdef, optimizer, *, scale: float, beta: float):
    """The jitted step ``(adapters, opt_state, state, stacked, batch) -> (adapters,
    opt_state, loss, metrics)``; inputs keep the shardings they arrive with (the frozen
    weights as the generator holds them, the batch split over the mesh's data axis)."""

    def step(adapters, opt_state, state, stacked, batch):
        grad_fn = jax.value_and_grad(pair_loss, has_aux=True)
        (loss, metrics), grads = grad_fn(
            adapters, graphdef, state, stacked, batch, scale=scale, beta=beta
        )
        updates, opt_state = optimizer.update(grads, opt_state, adapters)
        return optax.apply_updates(adapters, updates), opt_state, loss, metrics

    return jax.jit(step, donate_argnums=(0, 1))


def make_reference(graphdef):
    """The jitted ``(state, stacked, tokens, mask, select, keep) -> [N]`` log-probabilities of
    the frozen model (adapters at zero: the round's starting weights)."""

    def ref(state, stacked, tokens, mask, select, keep):
        return sequence_logprobs(nnx.merge(graphdef, state), stacked, tokens, mask, select, keep)

    return jax.jit(ref)
