"""Pure, jit-free array kernels for WASP's DP voting stage, imported as ``wasp_jax.kernels``.

The folder is the top-level ``kernels/`` of the repository; the package installs it under
``wasp_jax`` so that it claims no top-level import name of its own. These functions are not
jit-decorated at definition; the pipeline jits them at its boundary with static arguments
and shardings.
"""

from wasp_jax.kernels.approx import approx_top_q_candidates
from wasp_jax.kernels.noise import discrete_gaussian, lattice_step, threshold_table
from wasp_jax.kernels.padding import bucket_size, pad_rows
from wasp_jax.kernels.selection import Selection, select_contrastive, top_s_per_class
from wasp_jax.kernels.voting import (
    candidate_histogram,
    merge_candidates,
    top_q_candidates,
    top_q_votes,
    top_q_votes_parties,
    vote_weights,
)
from wasp_jax.kernels.weights import plm_scores, plm_shares

__all__ = [
    "Selection",
    "discrete_gaussian",
    "approx_top_q_candidates",
    "bucket_size",
    "candidate_histogram",
    "lattice_step",
    "merge_candidates",
    "pad_rows",
    "plm_scores",
    "plm_shares",
    "select_contrastive",
    "top_q_candidates",
    "top_q_votes",
    "top_q_votes_parties",
    "threshold_table",
    "top_s_per_class",
    "vote_weights",
]
