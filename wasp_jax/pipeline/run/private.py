"""The private data: read and split over data parties, in memory only.

Every record of the file is used: the guarantee is stated for the records of the file the user
passes (a prefix or a class-skewed subsample is a new file, written before the run by
`wasp_jax.pipeline.stages.prepare`).
Nothing here logs, prints or writes a private text; the texts go
to the embedder and their embeddings to the vote stage (docs/method.md §5.2, §6.6).
"""

from __future__ import annotations

import numpy as np

from wasp_jax import class_checks
from wasp_jax import data as data_io
from wasp_jax.budget import allocate_budget
from wasp_jax.config import DataConfig
from wasp_jax.pipeline.run.keys import host_rng
from wasp_jax.tasks import TaskSpec


def load_private(
    data: DataConfig, task: TaskSpec, *, seed: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Reads and party-splits the private data (never logged or written).

    Returns:
        (texts, labels (M,) int32, party (M,) int32).

    Raises:
        wasp_jax.data.DataError: unreadable file, bad records, labels outside the task.
    """
    path = data.private_path
    if not path:
        raise data_io.DataError(
            "this run reads private data: set data.private_path to a JSONL file"
        )
    rows = data_io.read_labeled_jsonl(
        path,
        label_names=task.labels,
        what="private",
        label_field=data.label_field or task.label_field,
        label_offset=task.label_offset,
        text_field=data.text_field,
    )
    rng = host_rng(seed, "data")
    labels = np.array([r["label"] for r in rows], np.int32)
    texts = [r["text"] for r in rows]
    class_checks.warn_missing_classes([{"label": y} for y in labels], task.labels)
    party = split_parties(labels, data.num_parties, data.party_alpha, rng)
    return texts, labels, party


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
