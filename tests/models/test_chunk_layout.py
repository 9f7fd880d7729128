"""`layout_chunk`: how a chunk of (prompt, sample) rows becomes sampler inputs."""

from __future__ import annotations

import numpy as np
from wasp_jax.kernels.padding import bucket_prompt_len

from wasp_jax.models.chunk_layout import layout_chunk

PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12]]
CHUNK = [(0, 0), (0, 1), (1, 0)]


def test_shared_prefix_groups_the_samples_of_a_prompt():
    lay = layout_chunk(CHUNK, PROMPTS, num_samples=2, max_new=5, share_prefix=True)
    p = bucket_prompt_len(5)
    assert lay.tokens.shape == (2, p) and lay.group == 2 and lay.new_tokens == 8
    np.testing.assert_array_equal(lay.tokens[0, -3:], PROMPTS[0])
    np.testing.assert_array_equal(lay.tokens[0, :-3], 0)
    np.testing.assert_array_equal(lay.positions[1, -5:], np.arange(5))
    assert lay.mask.sum(axis=1).tolist() == [3, 5]
    assert lay.slots.tolist() == [0, 1, 2]
    assert lay.row_ids.tolist() == [0, 1, 2, 0]  # i * num_samples + j
    assert lay.active.tolist() == [True, True, True, False]


def test_unshared_rows_are_their_own_prompt_rows():
    lay = layout_chunk(CHUNK, PROMPTS, num_samples=2, max_new=9, share_prefix=False)
    assert lay.tokens.shape[0] == 4 and lay.group == 1 and lay.new_tokens == 16
    np.testing.assert_array_equal(lay.tokens[0], lay.tokens[1])  # both rows of prompt 0
    np.testing.assert_array_equal(lay.tokens[3], lay.tokens[2])  # padding repeats the last
    assert lay.slots.tolist() == [0, 1, 2]
    assert lay.active.tolist() == [True, True, True, False]
