"""How `Generator` lays one chunk of (prompt, sample) rows out as sampler inputs (host side).

Rows come in groups of ``G`` per prompt row (the sampler's prefix sharing: a prompt is
prefilled once for all its samples in the chunk); without sharing every row is its own
prompt row (``G = 1``). Shapes are bucketed by the rules of `wasp_jax.kernels.padding`:
prompt rows to a power of two, prompt slots to `bucket_prompt_len`, new-token slots to a
power of two (at least 8). Padding prompt rows repeat the last prompt; padding sample rows
are inactive.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import numpy as np

from wasp_jax.kernels.padding import bucket_pow2, bucket_prompt_len


@dataclasses.dataclass(frozen=True)
class ChunkLayout:
    """The numpy inputs of one sampler call.

    Attributes:
      tokens, positions, mask: int32 / int32 / bool [Bp, P], the left-padded prompts.
      row_ids: uint32 [B], sample ``j`` of prompt ``i`` is ``i * num_samples + j`` (the
        fold-in of its key).
      active: bool [B], rows that hold a real sample.
      slots: int [len(chunk)], the sample row of each chunk row (in chunk order).
      group: G, sample rows per prompt row.
      new_tokens: N, new-token slots.
    """

    tokens: np.ndarray
    positions: np.ndarray
    mask: np.ndarray
    row_ids: np.ndarray
    active: np.ndarray
    slots: np.ndarray
    group: int
    new_tokens: int


def layout_chunk(
    chunk: Sequence[tuple[int, int]],
    prompt_ids: Sequence[Sequence[int]],
    *,
    num_samples: int,
    max_new: int,
    share_prefix: bool,
) -> ChunkLayout:
    """Lays out the ``(prompt i, sample j)`` rows of `chunk` (see the module docstring)."""
    row_prompt = [i for i, _ in chunk]
    order = list(dict.fromkeys(row_prompt)) if share_prefix else row_prompt
    grp = max(collections.Counter(row_prompt).values()) if share_prefix else 1
    bp = bucket_pow2(len(order))
    p = bucket_prompt_len(max(len(prompt_ids[i]) for i in order))
    toks = np.zeros((bp, p), np.int32)
    pos = np.zeros((bp, p), np.int32)
    mask = np.zeros((bp, p), bool)
    for r in range(bp):
        ids = prompt_ids[order[min(r, len(order) - 1)]]
        toks[r, p - len(ids) :] = ids
        pos[r, p - len(ids) :] = np.arange(len(ids))
        mask[r, p - len(ids) :] = True
    b = bp * grp
    row_ids = np.zeros(b, np.uint32)
    active = np.zeros(b, bool)
    first_slot = {i: g * grp for g, i in enumerate(order)}  # shared: next free slot
    slots = []
    for r, (i, j) in enumerate(chunk):
        slot = r
        if share_prefix:
            slot, first_slot[i] = first_slot[i], first_slot[i] + 1
        slots.append(slot)
        row_ids[slot] = i * num_samples + j
        active[slot] = True
    n = bucket_pow2(max_new, 8)
    return ChunkLayout(toks, pos, mask, row_ids, active, np.asarray(slots), grp, n)
