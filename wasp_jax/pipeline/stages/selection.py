"""After the noise: good/bad samples, PLM weights and budgets, and what metrics.jsonl shows.

Everything here is post-processing of the round's `NoisyVotes` and of public synthetic text,
so it adds no privacy cost (docs/method.md §6.2). The per-round split (§2.2) decides which
samples are voted on; `random_good_bad` is the control that draws the same sets without votes.
"""

from __future__ import annotations

import numpy as np

from wasp_jax.budget import allocate_budget, split_evenly
from wasp_jax.config import SelectionConfig, VotingConfig
from wasp_jax.kernels.selection import select_contrastive
from wasp_jax.kernels.weights import plm_scores, plm_shares
from wasp_jax.pipeline.run.keys import host_rng
from wasp_jax.pipeline.stages.vote import NoisyVotes


def train_mask(voting: VotingConfig, seed: int, n: int, round_: int) -> np.ndarray:
    """The per-round split (§2.2): True = voted on and usable in prompts, False = held out."""
    mask = np.ones(n, bool)
    f = voting.valid_fraction
    if f > 0 and n > 1:
        hold = host_rng(seed, "split", round_).permutation(n)[: int(round(f * n))]
        mask[hold] = False
    return mask


def select_good_bad(
    votes: NoisyVotes,
    labels,
    mask: np.ndarray,
    num_classes: int,
    *,
    selection: SelectionConfig,
) -> tuple[list[list[int]], list[list[int]]]:
    """Per class, the S samples with the largest noisy nearest (good) and farthest (bad) votes.

    `kernels.selection.select_contrastive` ranks the noisy counts inside each class (§2.6),
    or with `selection.compat_sign_flip` the original's normalise-then-rank. A histogram not
    released gives empty lists. Returns (good[c], bad[c]) as population indices.
    """
    labels = np.asarray(labels, np.int32)
    sel = select_contrastive(
        votes.nearest,
        votes.farthest,
        labels,
        np.asarray(mask, bool),
        num_classes=num_classes,
        s=min(selection.s, len(labels)),
        compat=selection.compat_sign_flip,
    )

    def lists(idx, valid) -> list[list[int]]:
        idx, valid = np.asarray(idx), np.asarray(valid)
        return [idx[c][valid[c]].astype(int).tolist() for c in range(num_classes)]

    return lists(sel.good_idx, sel.good_valid), lists(sel.bad_idx, sel.bad_valid)


def plm_vote_scores(votes: NoisyVotes, plm, mask: np.ndarray, k: int, formula: str) -> np.ndarray:
    """PLM scores from the noisy nearest histogram (`kernels.weights.plm_scores`, §2.7).

    "robust": mean positive noisy vote of the PLM's samples over the overall mean; "compat":
    the original's share of the normalised mass over the share of samples.
    """
    scores = plm_scores(
        votes.nearest,
        np.asarray(plm, np.int32),
        np.asarray(mask, bool),
        num_plms=k,
        compat=formula == "compat",
    )
    return np.asarray(scores, np.float64)


def plm_allocation(
    scores: np.ndarray, total: int, *, tau: float, weighting: bool
) -> tuple[np.ndarray, list[int]]:
    """softmax(score / tau) weights (`kernels.weights.plm_shares`) and their integer split of
    `total` (largest remainder); uniform if not weighting."""
    k = len(scores)
    if weighting:
        w = np.asarray(plm_shares(np.asarray(scores, np.float32), tau=tau), np.float64)
        w = w / w.sum()
    else:
        w = np.full(k, 1.0 / k)
    return w, allocate_budget(w, int(total))


def random_good_bad(
    seed: int, s: int, labels, mask: np.ndarray, num_classes: int, round_: int
) -> tuple[list[list[int]], list[list[int]]]:
    """The random control: S random same-class samples as "good" and S others as "bad"."""
    rng = host_rng(seed, "control", round_)
    labels = np.asarray(labels)
    good, bad = [], []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero((labels == c) & mask))
        good.append(idx[:s].tolist())
        bad.append(idx[s : 2 * s].tolist())  # disjoint from good, possibly short
    return good, bad


def class_quotas(total: int, num_classes: int, offset: int) -> list[int]:
    """Exact per-class quotas of a PLM's budget (no over-generation by the number of classes)."""
    return split_evenly(total, num_classes, offset)


def vote_summary(votes: NoisyVotes, labels, mask, num_classes: int) -> dict:
    """Post-noise summaries per histogram and class (mean, std, max) for metrics.jsonl."""
    labels = np.asarray(labels)
    out = {}
    for name, hist in votes.histograms().items():
        h = np.asarray(hist, np.float64)
        rows = []
        for c in range(num_classes):
            v = h[(labels == c) & mask]
            stats = {"mean": float(v.mean()), "std": float(v.std()), "max": float(v.max())}
            rows.append({"n": int(v.size)} | (stats if v.size else {}))
        out[name] = rows
    return out
