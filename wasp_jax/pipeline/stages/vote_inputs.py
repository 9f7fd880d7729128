"""Checks of the vote stage's inputs and their layout by data party (host side).

Every check raises a ValueError naming the argument; none of them prints or returns a value
computed from the private data beyond the checked arrays themselves.
"""

import jax
import jax.numpy as jnp
import numpy as np

from wasp_jax.kernels.padding import bucket_size, pad_rows

HISTOGRAMS = ("nearest", "farthest")


def release_histograms(release) -> tuple[str, ...]:
    release = (release,) if isinstance(release, str) else tuple(release)
    if not release or len(set(release)) != len(release) or not set(release) <= set(HISTOGRAMS):
        raise ValueError(f"release must be a non-empty subset of {HISTOGRAMS}, got {release!r}")
    return release


@jax.jit
def _norm_stats(emb, mask):
    norm = jnp.linalg.norm(emb.astype(jnp.float32), axis=1)
    dev = jnp.where(mask, jnp.abs(norm - 1.0), 0.0)
    return dev.max(), jnp.all(jnp.isfinite(emb) | ~mask[:, None])


def _check_embeddings(name, emb, mask, norm_tol):
    if emb.ndim != 2 or emb.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, d) with d >= 1, got {emb.shape}")
    if emb.shape[0] == 0:
        return
    dev, finite = _norm_stats(emb, jnp.asarray(mask))
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or inf in unmasked rows")
    if float(dev) > norm_tol:
        raise ValueError(
            f"{name} rows must be unit-norm (max | ||x|| - 1 | = {float(dev):.3g} > {norm_tol}); "
            "L2-normalise the embeddings (x / ||x||) before voting"
        )


def _check_vector(name, x, n, *, kind="int"):
    x = np.asarray(x)
    ok = np.issubdtype(x.dtype, np.integer) if kind == "int" else x.dtype == np.bool_
    if x.shape != (n,) or not ok:
        want = "integer" if kind == "int" else "bool"
        raise ValueError(f"{name} must be a ({n},) {want} array, got {x.dtype} {x.shape}")
    return x


def group_parties(priv_emb, priv_label, priv_mask, party_id, num_parties, multiple):
    """Reorders private rows into (num_parties, bucket, ...) arrays plus a mask."""
    counts = np.bincount(party_id, minlength=num_parties)
    size = bucket_size(int(counts.max(initial=0)), multiple=multiple)
    gather = np.zeros((num_parties, size), np.int64)
    mask = np.zeros((num_parties, size), bool)
    for p in range(num_parties):
        rows = np.flatnonzero(party_id == p)
        gather[p, : rows.size] = rows
        mask[p, : rows.size] = priv_mask[rows]
    if priv_emb.shape[0] == 0:
        emb = np.zeros((num_parties, size, priv_emb.shape[1]), np.float32)
    else:
        take = np.take if isinstance(priv_emb, np.ndarray) else jnp.take
        emb = take(priv_emb, gather.reshape(-1), axis=0).reshape(num_parties, size, -1)
    label = priv_label[gather] if priv_label.size else np.zeros(gather.shape, np.int32)
    return emb, label, mask


def vote_arrays(rows: tuple, *, sigma, num_parties, block_size, norm_tol):
    """Validates the arguments of `vote_and_noise`; returns the labels, masks and party ids
    as checked NumPy vectors (defaults filled in).

    `rows` = (priv_emb, priv_label, syn_emb, syn_label, priv_mask, syn_mask, party_id).
    """
    priv_emb, priv_label, syn_emb, syn_label, priv_mask, syn_mask, party_id = rows
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if isinstance(num_parties, bool) or not isinstance(num_parties, int) or num_parties < 1:
        raise ValueError(f"num_parties must be an integer >= 1, got {num_parties!r}")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"block_size must be None or an integer >= 1, got {block_size!r}")
    if priv_emb.ndim != 2 or syn_emb.ndim != 2 or priv_emb.shape[1] != syn_emb.shape[1]:
        raise ValueError(
            "priv_emb and syn_emb must be (n, d) arrays with the same d, got "
            f"{priv_emb.shape} and {syn_emb.shape}"
        )
    n_priv, n_syn = priv_emb.shape[0], syn_emb.shape[0]
    if n_syn < 1:
        raise ValueError("syn_emb must have at least one row")
    priv_label = _check_vector("priv_label", priv_label, n_priv)
    syn_label = _check_vector("syn_label", syn_label, n_syn)
    priv_mask = np.ones(n_priv, bool) if priv_mask is None else priv_mask
    syn_mask = np.ones(n_syn, bool) if syn_mask is None else syn_mask
    priv_mask = _check_vector("priv_mask", priv_mask, n_priv, kind="bool")
    syn_mask = _check_vector("syn_mask", syn_mask, n_syn, kind="bool")
    if party_id is None:
        if num_parties > 1:
            raise ValueError(f"party_id is required when num_parties={num_parties} > 1")
        party_id = np.zeros(n_priv, np.int64)
    party_id = _check_vector("party_id", party_id, n_priv)
    if n_priv and (party_id.min() < 0 or party_id.max() >= num_parties):
        raise ValueError(f"party_id values must be in [0, num_parties={num_parties})")
    _check_embeddings("priv_emb", priv_emb, priv_mask, norm_tol)
    _check_embeddings("syn_emb", syn_emb, syn_mask, norm_tol)

    return priv_label, syn_label, priv_mask, syn_mask, party_id


def pad_synthetic(syn_emb, syn_label, syn_mask, *, multiple: int):
    """(embeddings, labels, mask) of the synthetic set padded to its shape bucket (a multiple
    of the mesh size); padded rows are masked out."""
    size = bucket_size(syn_emb.shape[0], multiple=multiple)
    emb, _ = pad_rows(syn_emb, size)
    label, _ = pad_rows(np.asarray(syn_label).astype(np.int32), size)
    mask, _ = pad_rows(syn_mask, size, fill=False)
    return emb, label, mask
