"""Pure, jit-free array kernels for WASP's DP voting stage.

These functions are not jit-decorated at definition; `wasp_jax` jits them at its
boundary with static arguments and shardings.
"""

from kernels.noise import add_gaussian_noise, add_party_noise
from kernels.padding import bucket_size, pad_rows
from kernels.selection import Selection, select_contrastive, top_s_per_class
from kernels.voting import (
    candidate_histogram,
    merge_candidates,
    top_q_candidates,
    top_q_votes,
    top_q_votes_parties,
    vote_weights,
)
from kernels.weights import plm_scores, plm_shares

__all__ = [
    "Selection",
    "add_gaussian_noise",
    "add_party_noise",
    "bucket_size",
    "candidate_histogram",
    "merge_candidates",
    "pad_rows",
    "plm_scores",
    "plm_shares",
    "select_contrastive",
    "top_q_candidates",
    "top_q_votes",
    "top_q_votes_parties",
    "top_s_per_class",
    "vote_weights",
]
