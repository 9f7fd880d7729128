"""WASP+ after the noise: public clusters, good/bad picks, PLM budgets and sample weights.

Everything here reads public synthetic data (texts, embeddings, labels, PLM ids) and the
noisy releases of ``wasp_jax.pipeline.stages.vote_plus``; it is post-processing and costs no
privacy (docs/method.md §9).

* ``class_clusters``: k-means inside each class over the synthetic embeddings (scipy's
  ``kmeans2``, k-means++ start, a seeded generator); cluster ``c * k + j`` is class c's j-th.
* ``cluster_picks``: per class, S candidates from the clusters with the highest noisy totals
  (members nearest their cluster centre first).
* ``useful_shares``: softmax(noisy usefulness counts / temperature), the PLM budget shares.
* ``cluster_weights``: a per-sample training weight from the noisy cluster totals.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.vq import kmeans2


def probe_params(emb, labels, plm, mask, *, num_plms: int, num_classes: int, c: float = 1.0):
    """(kernels (K, d, C), biases (K, C)) of a linear probe fitted on each PLM's own rows.

    A PLM with rows of a single class (or none) gets a constant probe for its majority class.
    Public: only synthetic rows are read.
    """
    from wasp_jax.stm.probe import train_probe

    emb, labels, plm = np.asarray(emb, np.float32), np.asarray(labels), np.asarray(plm)
    mask = np.ones(len(labels), bool) if mask is None else np.asarray(mask, bool)
    d = emb.shape[1]
    kernels = np.zeros((num_plms, d, num_classes), np.float32)
    biases = np.zeros((num_plms, num_classes), np.float32)
    for k in range(num_plms):
        rows = mask & (plm == k)
        y = labels[rows]
        if len(np.unique(y)) < 2:
            biases[k, np.bincount(y, minlength=num_classes).argmax() if y.size else 0] = 1.0
            continue
        probe, _ = train_probe(emb[rows], y, num_classes=num_classes, c=c)
        kernels[k], biases[k] = probe.kernel, probe.bias
    return kernels, biases


def class_clusters(emb, labels, mask, *, per_class: int, num_classes: int, seed: int):
    """(cluster id (n,), centres (num_classes * per_class, d)); masked rows get id of their
    nearest centre of their class too, so every row has a cluster."""
    emb = np.asarray(emb, np.float64)
    labels = np.asarray(labels)
    mask = np.ones(len(labels), bool) if mask is None else np.asarray(mask, bool)
    ids = np.zeros(len(labels), np.int32)
    centres = np.zeros((num_classes * per_class, emb.shape[1]))
    rng = np.random.default_rng(seed)
    for c in range(num_classes):
        rows = np.flatnonzero(labels == c)
        fit = rows[mask[rows]]
        if fit.size == 0:
            continue
        k = min(per_class, fit.size)
        cent, _ = kmeans2(emb[fit], k, minit="++", seed=rng, iter=20)
        centres[c * per_class : c * per_class + k] = cent
        if k < per_class:  # unused slots: far away, never nearest
            centres[c * per_class + k : (c + 1) * per_class] = np.inf
        d2 = ((emb[rows, None, :] - cent[None]) ** 2).sum(-1)
        ids[rows] = c * per_class + d2.argmin(1)
    return ids, centres


def _members_by_centrality(emb, ids, centres, rows):
    d2 = ((emb[rows] - centres[ids[rows]]) ** 2).sum(-1)
    return rows[np.argsort(d2, kind="stable")]


def cluster_picks(
    totals, cluster_id, centres, emb, labels, mask, *, s: int, num_classes: int, per_class: int
) -> list[list[int]]:
    """Per class, S masked candidates from its clusters in decreasing noisy total."""
    totals = np.asarray(totals, np.float64)
    emb, labels = np.asarray(emb, np.float64), np.asarray(labels)
    mask = np.asarray(mask, bool)
    out = []
    for c in range(num_classes):
        ids = range(c * per_class, (c + 1) * per_class)
        order = sorted(ids, key=lambda j: -totals[j])
        picks: list[int] = []
        for j in order:
            rows = np.flatnonzero((cluster_id == j) & mask & (labels == c))
            members = _members_by_centrality(emb, cluster_id, centres, rows)
            picks += members[: s - len(picks)].tolist()
            if len(picks) >= s:
                break
        out.append([int(i) for i in picks])
    return out


def useful_shares(noisy_counts, *, temperature: float) -> np.ndarray:
    """softmax(noisy usefulness counts / temperature) (temperature in records)."""
    z = np.asarray(noisy_counts, np.float64) / float(temperature)
    z = np.exp(z - z.max())
    return z / z.sum()


def cluster_weights(totals, cluster_id, *, floor: float = 0.25) -> np.ndarray:
    """Per-sample weights: each row's cluster's positive noisy total per member, scaled to
    mean 1 over the rows, with a floor so that no row is dropped."""
    totals = np.maximum(np.asarray(totals, np.float64), 0.0)
    cluster_id = np.asarray(cluster_id)
    size = np.bincount(cluster_id, minlength=len(totals)).astype(np.float64)
    per_row = totals[cluster_id] / np.maximum(size[cluster_id], 1.0)
    if per_row.max(initial=0.0) <= 0:
        return np.ones(len(cluster_id))
    w = np.maximum(per_row / per_row.mean(), floor)
    return w / w.mean()
