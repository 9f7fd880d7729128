"""The private data: read, subsampled and split over data parties, in memory only.

Nothing here logs, prints or writes a private text; the texts go to the embedder and their
embeddings to the vote stage (docs/method.md §5.2, §6.6).
"""

from __future__ import annotations

import numpy as np

from wasp_jax import class_checks
from wasp_jax import data as data_io
from wasp_jax.budget import allocate_budget
from wasp_jax.config import DataConfig
from wasp_jax.pipeline.keys import host_rng
from wasp_jax.tasks import TaskSpec


def load_private(
    data: DataConfig, task: TaskSpec, *, seed: int, method: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Reads, subsamples and party-splits the private data (never logged or written).

    Returns:
        (texts, labels (M,) int32, party (M,) int32).

    Raises:
        wasp_jax.data.DataError: unreadable file, bad records, labels outside the task.
    """
    path = data.private_path
    if not path:
        raise data_io.DataError(
            f"method {method!r} needs private data: set data.private_path to a JSONL file"
        )
    rows = data_io.read_labeled_jsonl(
        path,
        label_names=task.labels,
        what="private",
        label_field=task.label_field,
        label_offset=task.label_offset,
    )
    rng = host_rng(seed, "data")
    labels = np.array([r["label"] for r in rows], np.int32)
    keep = np.arange(len(rows))
    if data.class_skew_alpha > 0:
        keep = _dirichlet_subsample(labels, task.num_classes, data.class_skew_alpha, rng)
    if data.num_private:
        keep = keep[: data.num_private]
    texts = [rows[i]["text"] for i in keep]
    labels = labels[keep]
    class_checks.warn_missing_classes([{"label": y} for y in labels], task.labels)
    party = split_parties(labels, data.num_parties, data.party_alpha, rng)
    return texts, labels, party


def _dirichlet_subsample(labels, num_classes, alpha, rng) -> np.ndarray:
    """Indices whose class proportions follow one Dirichlet(alpha) draw (docs/method.md §5.2)."""
    props = rng.dirichlet(np.full(num_classes, alpha))
    counts = np.bincount(labels, minlength=num_classes)
    total = int(min(counts[c] / max(props[c], 1e-12) for c in range(num_classes)))
    want = allocate_budget(props, min(total, len(labels)))
    picks = [rng.permutation(np.flatnonzero(labels == c))[: want[c]] for c in range(num_classes)]
    return rng.permutation(np.concatenate(picks)).astype(np.int64)


def split_parties(labels: np.ndarray, num_parties: int, alpha: float, rng) -> np.ndarray:
    """Party id per private sample: an even random split, or per class Dirichlet(alpha)."""
    party = np.zeros(len(labels), np.int32)
    if num_parties == 1:
        return party
    if alpha <= 0:
        party[rng.permutation(len(labels))] = np.arange(len(labels)) % num_parties
        return party
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        counts = allocate_budget(rng.dirichlet(np.full(num_parties, alpha)), len(idx))
        party[idx] = np.repeat(np.arange(num_parties), counts)
    return party
