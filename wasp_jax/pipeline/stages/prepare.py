"""Data preparation before a run: a new private file cut from a labelled one.

A run uses every record of the file it is given, and its privacy guarantee is stated for the
records of that file. Experiments that want a smaller or class-skewed private set write it to
a new file here first (`wasp-jax prepare-private`) and pass that file to the run:

* ``num``: the first ``num`` records (of the file, or of the skewed subsample);
* ``class_skew_alpha`` = alpha > 0: class proportions p ~ Dirichlet(alpha 1_C) are drawn once
  (seeded), and the largest subset whose class counts follow p (largest-remainder rounding)
  is kept, in random order (the original code's ``--unbalance_gold``).

Both steps look at the source file (its order, its class counts), so the run's guarantee is
about the records of the prepared file, not about those of the source. docs/method.md §5.2.

Example::

    prepare_private("private.jsonl", "first_300.jsonl", task=load_task("imdb"), num=300)
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np

from wasp_jax import data as data_io
from wasp_jax.budget import allocate_budget
from wasp_jax.errors import DataError
from wasp_jax.pipeline.run.keys import host_rng
from wasp_jax.tasks import TaskSpec


def subsample(
    labels: np.ndarray, *, num_classes: int, num: int = 0, class_skew_alpha: float = 0.0, seed=0
) -> np.ndarray:
    """Indices of the kept records, in the order they are written (see the module docstring).

    Args:
      labels: (M,) int class ids of the source records.
      num_classes: C.
      num: keep at most this many (0 = all).
      class_skew_alpha: Dirichlet concentration of the class skew (0 = keep the balance).
      seed: seeds the skew's draws.
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 0:
        raise ValueError(f"num must be an integer >= 0 (0 = all), got {num!r}")
    if not class_skew_alpha >= 0:
        raise ValueError(f"class_skew_alpha must be >= 0 (0 = off), got {class_skew_alpha!r}")
    labels = np.asarray(labels)
    keep = np.arange(len(labels))
    if class_skew_alpha > 0:
        rng = host_rng(seed, "data")
        keep = _dirichlet_subsample(labels, num_classes, class_skew_alpha, rng)
    return keep[:num] if num else keep


def _dirichlet_subsample(labels, num_classes, alpha, rng) -> np.ndarray:
    """Indices whose class proportions follow one Dirichlet(alpha) draw."""
    props = rng.dirichlet(np.full(num_classes, alpha))
    counts = np.bincount(labels, minlength=num_classes)
    total = int(min(counts[c] / max(props[c], 1e-12) for c in range(num_classes)))
    want = allocate_budget(props, min(total, len(labels)))
    picks = [rng.permutation(np.flatnonzero(labels == c))[: want[c]] for c in range(num_classes)]
    return rng.permutation(np.concatenate(picks)).astype(np.int64)


def prepare_private(
    src, dst, *, task: TaskSpec, num: int = 0, class_skew_alpha: float = 0.0, seed: int = 0
) -> int:
    """Writes the kept records of ``src`` to ``dst`` (atomically, ``src``'s permissions).

    The records are copied as they are (every field); nothing is logged or printed.

    Returns:
      The number of records written.

    Raises:
      DataError: an unreadable or invalid ``src`` (labels outside ``task``), ``dst`` is
        ``src``, or nothing would be kept.
    """
    src, dst = pathlib.Path(src), pathlib.Path(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        raise DataError(f"{dst} is the source file itself; write the prepared file elsewhere")
    read = dict(label_field=task.label_field, label_offset=task.label_offset)
    rows = data_io.read_labeled_jsonl(src, label_names=task.labels, what="private", **read)
    raw = data_io.read_jsonl(src, what="private")  # the records as given, same order
    labels = np.array([r["label"] for r in rows], np.int64)
    keep = subsample(
        labels, num_classes=task.num_classes, num=num, class_skew_alpha=class_skew_alpha, seed=seed
    )
    if len(keep) == 0:
        raise DataError(f"no record of {src} would be kept; raise --num or --class-skew-alpha")
    data_io.atomic_write_jsonl(dst, (raw[i] for i in keep))
    shutil.copymode(src, dst)
    return len(keep)
