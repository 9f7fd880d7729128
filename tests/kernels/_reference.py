"""Brute-force NumPy oracle for the Top-Q vote kernel (test helper, not a test module)."""

import numpy as np


def reference_votes(priv_emb, priv_label, syn_emb, syn_label, q, priv_mask=None, syn_mask=None):
    """Loops over private rows; distances, same-class pool, explicit sort (docs/method.md §2.4)."""
    n_priv, n_syn = len(priv_emb), len(syn_emb)
    priv_mask = np.ones(n_priv, bool) if priv_mask is None else np.asarray(priv_mask)
    syn_mask = np.ones(n_syn, bool) if syn_mask is None else np.asarray(syn_mask)
    near, far = np.zeros(n_syn), np.zeros(n_syn)
    w = 0.5 ** np.arange(q)  # the paper's weights 1, 1/2, 1/4, ... (docs/method.md §2.4)
    for i in range(n_priv):
        if not priv_mask[i]:
            continue
        pool = np.flatnonzero((np.asarray(syn_label) == priv_label[i]) & syn_mask)
        dist = np.linalg.norm(np.asarray(syn_emb, np.float64)[pool] - priv_emb[i], axis=1)
        order = np.argsort(dist, kind="stable")
        k = min(q, pool.size)
        # np.add.at with weights broadcast to the index shape.
        np.add.at(near, pool[order[:k]], w[:k])
        np.add.at(far, pool[order[::-1][:k]], w[:k])
    return near, far


def unit_rows(rng, n, d, dtype=np.float32):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)
