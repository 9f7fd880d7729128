"""Post-processing of noisy class prototypes: candidate margins, examples and PLM scores.

The prototypes are one DP release (`wasp_jax.privacy.release_kinds`, kind
``class_prototypes``: per class, the noisy sum of the clipped private embeddings); everything
here reads only them and public synthetic data, so it costs no privacy.

* ``margins``: per candidate, the cosine to its own class's prototype minus the largest
  cosine to another class's prototype (> 0: the prototypes agree with its label).
* ``good_bad``: per class, the S candidates of highest margin (good) and the S of lowest
  margin, the most confusable (bad), disjoint.
* ``plm_margin_scores``: each PLM's mean margin over its candidates.
* ``public_subspace`` / ``project``: a subspace fixed by public embeddings (their mean and top
  principal directions) and the unit-norm projection of any embedding onto it.
"""

from __future__ import annotations

import numpy as np


def margins(emb, labels, prototypes) -> np.ndarray:
    """(n,) own-class cosine minus the best other-class cosine (a class whose noisy sum is 0
    has cosine 0 with everything)."""
    emb = np.asarray(emb, np.float64)
    protos = np.asarray(prototypes, np.float64)
    norms = np.linalg.norm(protos, axis=1, keepdims=True)
    protos = np.where(norms > 0, protos / np.maximum(norms, 1e-300), 0.0)
    cos = emb @ protos.T
    labels = np.asarray(labels, np.int64)
    rows = np.arange(len(labels))
    own = cos[rows, labels]
    others = cos.copy()
    others[rows, labels] = -np.inf
    best_other = others.max(axis=1) if cos.shape[1] > 1 else np.zeros(len(labels))
    return own - best_other


def good_bad(
    margin: np.ndarray, labels, mask: np.ndarray, num_classes: int, s: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Per class, the S highest-margin candidates and the S lowest (disjoint, ties by index)."""
    labels, mask = np.asarray(labels), np.asarray(mask, bool)
    good, bad = [], []
    for c in range(num_classes):
        idx = np.flatnonzero((labels == c) & mask)
        order = idx[np.argsort(-margin[idx], kind="stable")]
        good.append(order[:s].tolist())
        rest = order[len(good[-1]) :]
        bad.append(rest[::-1][:s].tolist())
    return good, bad


def plm_margin_scores(margin: np.ndarray, plm, mask: np.ndarray, num_plms: int) -> np.ndarray:
    """(K,) mean margin of each PLM's candidates (0 for a PLM with none)."""
    plm, mask = np.asarray(plm, np.int64), np.asarray(mask, bool)
    out = np.zeros(num_plms)
    for k in range(num_plms):
        rows = mask & (plm == k)
        if rows.any():
            out[k] = float(margin[rows].mean())
    return out


def summary(margin: np.ndarray, labels, mask: np.ndarray, num_classes: int) -> dict:
    """Per class, the mean margin and the share of candidates the prototypes agree with."""
    labels, mask = np.asarray(labels), np.asarray(mask, bool)
    mean, agree = [], []
    for c in range(num_classes):
        m = margin[(labels == c) & mask]
        mean.append(round(float(m.mean()), 4) if m.size else None)
        agree.append(round(float((m > 0).mean()), 4) if m.size else None)
    return {"prototype_margin_mean": mean, "prototype_agreement": agree}


def public_subspace(public_emb, dims: int) -> np.ndarray:
    """(dims + 1, d): the mean of the public embeddings, then their top `dims` principal
    directions (signs fixed so each direction's largest entry is positive)."""
    x = np.asarray(public_emb, np.float64)
    if dims < 1 or dims > min(x.shape):
        raise ValueError(
            f"a {dims}-dimensional subspace needs at least {dims} public embeddings of at "
            f"least {dims} dimensions, got {x.shape}; lower proto.dims or raise the round-0 "
            "budget (generation.initial)"
        )
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[:dims]
    signs = np.sign(basis[np.arange(dims), np.abs(basis).argmax(axis=1)])
    return np.concatenate([mean[None], basis * signs[:, None]]).astype(np.float32)


def project(emb, space) -> np.ndarray:
    """(n, dims) unit-norm coordinates of the centred embeddings in the subspace (a row
    that projects to 0 stays 0); ``space`` None leaves the embeddings as they are."""
    if space is None:
        return np.asarray(emb, np.float32)
    space = np.asarray(space, np.float64)
    z = (np.asarray(emb, np.float64) - space[0]) @ space[1:].T
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return np.where(norm > 0, z / np.maximum(norm, 1e-300), 0.0).astype(np.float32)
