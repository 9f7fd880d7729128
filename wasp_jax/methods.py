"""Per-round logic of each method: DP votes, selection, PLM weights and the next prompts.

`noisy_votes` is the only function here that sees private values; it calls helper A's
`wasp_jax.vote.vote_and_noise` and returns only the noised histograms. Everything after it
(`select_good_bad`, `plm_allocation`, `round_prompts`) is post-processing of those and of
public synthetic text, so it adds no privacy cost (ALGORITHM 7.2).

Methods (see `wasp_jax.config`): wasp and replay vote (nearest + farthest) and use
contrastive prompts (replay then draws pool rows instead of generating); aug_pe votes with
q = 1 on one histogram and rephrases its top-S seeds; random_control builds WASP's prompts
from random same-class samples without votes; zerogen / multi_zeroshot have no rounds.

Replay, precisely: each PLM k has a candidate pool file; round 0 takes the first
`initial_k` rows of each pool (per class, in file order) and every later round t draws the
next `a_k` rows per class, with a_k the DP PLM allocation of round t. The output is the
accumulated drawn set; each round's DP-selected good/bad samples are recorded in
metrics.jsonl (`selected`).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from wasp_jax import prompts as P
from wasp_jax.config import WaspConfig
from wasp_jax.stages import Population, host_rng, split_evenly
from wasp_jax.tasks import TaskSpec

# ----------------------------------------------------------------------------- privacy


@dataclasses.dataclass(frozen=True)
class PrivacyPlan:
    """The resolved noise calibration of a run (all public)."""

    epsilon: float
    delta: float
    adjacency: str
    accounting: str
    sensitivity: float
    l2_sensitivity: float
    sigma: float
    rounds: int
    num_parties: int
    releases: tuple[str, ...]


def privacy_plan(cfg: WaspConfig) -> PrivacyPlan | None:
    """Sensitivity and sigma for the configured release (None: no private data is used).

    "pld"/"rdp": the exact L2 sensitivity of the released histograms under the chosen
    adjacency, calibrated with dp_accounting for T Gaussian releases. "classic": the
    original's Delta and formula (ALGORITHM 7.1; sigma = 9.6896 at the WASP defaults).
    """
    if not cfg.uses_private_data:
        return None
    from wasp_jax import privacy as priv

    p, q, T = cfg.privacy, cfg.voting.q, cfg.generation.rounds
    nh = cfg.num_histograms
    l2 = priv.l2_sensitivity(q, num_histograms=nh, adjacency=p.adjacency)
    if p.sensitivity_override is not None:
        sens = p.sensitivity_override
    elif p.accounting == "classic":
        sens = priv.classic_delta(q, contrastive=nh == 2)
    else:
        sens = l2
    sigma = priv.calibrate_sigma(
        p.epsilon, p.delta, num_rounds=T, l2_sensitivity=sens, method=p.accounting
    )
    return PrivacyPlan(
        epsilon=p.epsilon,
        delta=p.delta,
        adjacency=p.adjacency,
        accounting=p.accounting,
        sensitivity=float(sens),
        l2_sensitivity=float(l2),
        sigma=float(sigma),
        rounds=T,
        num_parties=cfg.data.num_parties,
        releases=tuple(cfg.voting.release),
    )


def noisy_votes(
    noise_key: jax.Array,
    priv_emb: np.ndarray,
    priv_label: np.ndarray,
    priv_party: np.ndarray,
    syn_emb: np.ndarray,
    syn_label: np.ndarray,
    syn_mask: np.ndarray,
    *,
    cfg: WaspConfig,
    sigma: float,
) -> dict[str, np.ndarray]:
    """Top-Q votes of the private samples over the synthetic set, plus Gaussian noise.

    Args:
        noise_key: this round's key of the DP-noise stream.
        priv_emb: (M, d) unit-norm private embeddings; priv_label, priv_party: (M,) int.
        syn_emb: (n, d) unit-norm synthetic embeddings; syn_label: (n,) int.
        syn_mask: (n,) bool, False for samples held out this round (they get no votes).
        cfg: the run config (q, release, block size, parties).
        sigma: total noise std (each of L parties adds sigma / sqrt(L)).

    Returns:
        {release name: (n,) float64 noisy histogram}: post-noise values only.
    """
    from wasp_jax.vote import vote_and_noise

    out = vote_and_noise(
        noise_key,
        np.asarray(priv_emb, np.float32),
        np.asarray(priv_label, np.int32),
        np.asarray(syn_emb, np.float32),
        np.asarray(syn_label, np.int32),
        q=cfg.voting.q,
        sigma=sigma,
        release=tuple(cfg.voting.release),
        adjacency=cfg.privacy.adjacency,
        syn_mask=np.asarray(syn_mask, bool),
        party_id=np.asarray(priv_party, np.int32),
        num_parties=cfg.data.num_parties,
        block_size=cfg.voting.block_size or None,
    )
    return {name: np.asarray(getattr(out, name), np.float64) for name in cfg.voting.release}


# ----------------------------------------------------------------------------- selection


def select_good_bad(
    votes: dict[str, np.ndarray],
    labels,
    mask: np.ndarray,
    num_classes: int,
    *,
    s: int,
    compat_sign_flip: bool,
) -> tuple[list[list[int]], list[list[int]]]:
    """Per class, the S samples with the largest noisy nearest (good) and farthest (bad) votes.

    Uses helper A's `kernels.selection.top_s_per_class`: ranks the noisy counts themselves
    inside each class (ALGORITHM 2.6), or with `compat_sign_flip` the original's
    normalise-then-rank. A histogram not released gives empty lists. Returns (good[c], bad[c]).
    """
    from kernels.selection import top_s_per_class

    labels = np.asarray(labels, np.int32)
    s = min(s, len(labels))
    out = []
    for name in ("nearest", "farthest"):
        if name not in votes:
            out.append([[] for _ in range(num_classes)])
            continue
        idx, valid = top_s_per_class(
            np.asarray(votes[name], np.float32),
            labels,
            np.asarray(mask, bool),
            num_classes=num_classes,
            s=s,
            compat=compat_sign_flip,
        )
        idx, valid = np.asarray(idx), np.asarray(valid)
        out.append([idx[c][valid[c]].astype(int).tolist() for c in range(num_classes)])
    return out[0], out[1]


def plm_scores(nearest: np.ndarray, plm, mask: np.ndarray, k: int, formula: str) -> np.ndarray:
    """PLM scores from the noisy nearest histogram (helper A's `kernels.weights.plm_scores`).

    "robust": mean positive noisy vote of the PLM's samples over the overall mean; "compat":
    the original's share of the normalised mass over the share of samples (ALGORITHM 2.7).
    """
    from kernels.weights import plm_scores as _scores

    return np.asarray(
        _scores(
            np.asarray(nearest, np.float32),
            np.asarray(plm, np.int32),
            np.asarray(mask, bool),
            num_plms=k,
            compat=formula == "compat",
        ),
        np.float64,
    )


def plm_allocation(
    scores: np.ndarray, total: int, *, tau: float, weighting: bool
) -> tuple[np.ndarray, list[int]]:
    """softmax(score / tau) weights (`kernels.weights.plm_shares`) and their integer split of
    `total` (`wasp_jax.allocation.allocate_budget`, largest remainder); uniform if not
    weighting."""
    from kernels.weights import plm_shares
    from wasp_jax.allocation import allocate_budget

    k = len(scores)
    if weighting:
        w = np.asarray(plm_shares(np.asarray(scores, np.float32), tau=tau), np.float64)
        w = w / w.sum()
    else:
        w = np.full(k, 1.0 / k)
    return w, [int(x) for x in allocate_budget(w, int(total))]


# ----------------------------------------------------------------------------- prompts


def round_prompts(
    cfg: WaspConfig,
    task: TaskSpec,
    pop: Population,
    good: list[list[int]],
    bad: list[list[int]],
    round_: int,
) -> list[list[str]]:
    """The prompt variants of every class for this round's generation.

    wasp / replay / random_control: contrastive (or plain) variants from the bad/good
    texts; aug_pe: one rephrase prompt per good seed with this round's style.
    """
    rng = host_rng(cfg.seed, "prompts", round_)
    out = []
    for c in range(task.num_classes):
        g = [pop.texts[i] for i in good[c]]
        b = [pop.texts[i] for i in bad[c]]
        if cfg.method == "aug_pe":
            styles = task.aug_pe_styles
            style = styles[int(host_rng(cfg.seed, "style", round_).integers(len(styles)))]
            out.append(P.aug_pe_prompts(task, c, g, style) or [P.zero_shot_prompt(task, c)])
        elif not g:
            out.append([P.zero_shot_prompt(task, c)])
        elif cfg.generation.contrastive and b:
            out.append(
                P.contrastive_prompts(
                    task,
                    c,
                    g,
                    b,
                    s=cfg.selection.s,
                    num_variants=cfg.generation.num_prompt_variants,
                    rng=rng,
                )
            )
        else:
            out.append(
                P.plain_prompts(
                    task, c, g, num_variants=cfg.generation.num_prompt_variants, rng=rng
                )
            )
    return out


def random_good_bad(
    cfg: WaspConfig, pop: Population, mask: np.ndarray, num_classes: int, round_: int
) -> tuple[list[list[int]], list[list[int]]]:
    """random_control: S random same-class samples as "good" and S others as "bad"."""
    rng = host_rng(cfg.seed, "control", round_)
    labels = np.asarray(pop.labels)
    good, bad = [], []
    s = cfg.selection.s
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero((labels == c) & mask))
        good.append(idx[:s].tolist())
        bad.append(idx[s : 2 * s].tolist() or idx[:s].tolist())
    return good, bad


def class_quotas(total: int, num_classes: int, offset: int) -> list[int]:
    """Exact per-class quotas of a PLM's budget (no xC over-generation)."""
    return split_evenly(total, num_classes, offset)


def train_mask(cfg: WaspConfig, n: int, round_: int) -> np.ndarray:
    """Per-round 90/10-style split (ALGORITHM 2.2): True = voted on / usable in prompts."""
    mask = np.ones(n, bool)
    f = cfg.voting.valid_fraction
    if f > 0 and n > 1:
        hold = host_rng(cfg.seed, "split", round_).permutation(n)[: int(round(f * n))]
        mask[hold] = False
    return mask


def vote_summary(votes: dict[str, np.ndarray], labels, mask, num_classes: int) -> dict:
    """Post-noise summaries per histogram and class (mean, std, max) for metrics.jsonl."""
    labels = np.asarray(labels)
    out = {}
    for name, h in votes.items():
        rows = []
        for c in range(num_classes):
            v = h[(labels == c) & mask]
            rows.append(
                {"n": int(v.size)}
                | (
                    {"mean": float(v.mean()), "std": float(v.std()), "max": float(v.max())}
                    if v.size
                    else {}
                )
            )
        out[name] = rows
    return out
