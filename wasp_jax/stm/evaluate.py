"""Train the small task model on one labelled file, test it on another (docs/method.md §3).

Both files are JSON Lines with "text" and integer "label" (and optionally "label_name"), read
and validated by `wasp_jax.data.read_labeled_jsonl`. ``finetune`` trains the BERT classifier of
`wasp_jax.stm` once per seed (early stopping on a split of the *training* file); ``probe``
embeds both files once with the frozen encoder and fits a logistic-regression probe
(deterministic L-BFGS: every seed gives the same probe). The results hold accuracy and macro-F1
(`wasp_jax.stm.metrics`; mean, sample std over seeds, per seed) and what was trained on what:
paths, sizes, sha256, class counts, mode, hyperparameters, wall time and devices. The command
line is `wasp-jax evaluate` (`wasp_jax.cli.evaluate`); Python callers (the pipeline, the table
script) use :func:`evaluate_files` or :func:`evaluate_texts`.

    res = evaluate_files("runs/x/synthetic.jsonl", "data/imdb/test.jsonl", mode="probe")
    res["accuracy"]["mean"], res["macro_f1"]["per_seed"]
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import numpy as np

from wasp_jax import data as data_io
from wasp_jax.errors import UsageError
from wasp_jax.models.bert import load_bert
from wasp_jax.models.embedder import Embedder
from wasp_jax.stm.classifier import STMConfig
from wasp_jax.stm.finetune import train_classifier
from wasp_jax.stm.metrics import accuracy, macro_f1
from wasp_jax.stm.probe import train_probe

MODES = ("finetune", "probe")
PROBE_HPARAMS = {"c": 1.0, "max_iter": 300}


def read_examples(
    path: str | pathlib.Path, *, what: str = "input"
) -> tuple[list[str], np.ndarray, dict[int, str]]:
    """(texts, int32 labels, {label: label_name}) of a labelled JSONL file.

    A thin adapter over `wasp_jax.data.read_labeled_jsonl` without task label names: labels
    are any ints >= 0, texts are stripped, and each label id has at most one label_name.

    Raises:
      DataError: (a `UsageError`) missing or unreadable file, malformed JSON, a missing or
        ill-typed "text"/"label", empty text, a label_name that disagrees with an earlier
        line, or no records; one line naming the file and line.
    """
    rows = data_io.read_labeled_jsonl(path, what=what)
    names: dict[int, str] = {}
    for row in rows:
        if row.get("label_name") is not None:
            names.setdefault(row["label"], row["label_name"])
    return [r["text"] for r in rows], np.asarray([r["label"] for r in rows], np.int32), names


def _summary(values: Sequence[float]) -> dict:
    arr = np.asarray(values, np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "per_seed": [float(v) for v in arr]}


def evaluate_texts(
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    test_texts: Sequence[str],
    test_labels: Sequence[int],
    *,
    num_classes: int,
    mode: str = "finetune",
    seeds: Sequence[int] = (0, 1, 2),
    config: STMConfig | None = None,
    test_max_length: int = 256,
    weights: Sequence[float] | None = None,
    mesh=None,
    cache_dir=None,
    progress: bool = False,
) -> dict:
    """Trains one STM per seed on the training texts and scores it on the test texts.

    Args:
      num_classes: C; macro-F1 averages over all C classes (`wasp_jax.stm.metrics`).
      mode: "finetune" (`train_classifier`) or "probe" (`train_probe` on frozen
        ``config.encoder`` embeddings, computed once for all seeds).
      config: `STMConfig` (default STMConfig()).
      test_max_length: truncation of test texts. Fine-tuning trains at ``config.max_length``
        (128) and tests at this length; the probe embeds training and test texts alike at
        this length (256, MiniLM's usual), as a standard probe does, and does not use
        ``config.max_length``.
      weights: optional per-sample loss weights for the training texts.

    Returns:
      {"accuracy": {"mean", "std", "per_seed"}, "macro_f1": {...}, "runs": [per-seed info]}.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    config = config or STMConfig()
    test_labels = np.asarray(test_labels, np.int32)
    runs = []
    if mode == "probe":
        loaded = load_bert(config.encoder, cache_dir=cache_dir, mesh=mesh)
        # embeddings are computed once here and shared by every seed; never cached on disk
        embedder = Embedder(loaded, mesh=mesh, max_length=test_max_length)
        x_train = embedder.embed(train_texts, progress=progress)
        x_test = embedder.embed(test_texts, progress=progress)
    for seed in seeds:
        start = time.perf_counter()
        key = jax.random.key(seed)
        if mode == "probe":
            probe, info = train_probe(
                x_train,
                train_labels,
                num_classes=num_classes,
                key=key,
                weights=weights,
                **PROBE_HPARAMS,
            )
            pred = probe.predict(x_test)
        else:
            clf, info = train_classifier(
                train_texts,
                train_labels,
                num_classes=num_classes,
                key=key,
                config=config,
                weights=weights,
                mesh=mesh,
                cache_dir=cache_dir,
                progress=progress,
            )
            pred = clf.predict(test_texts, max_length=test_max_length)
            info.pop("val_indices", None)
        runs.append(_scored(info, seed, test_labels, pred, num_classes, start))
        if progress:
            line = f"seed {seed}: accuracy {info['accuracy']:.4f} ({info['seconds']} s)"
            print(line, file=sys.stderr)
    return {
        "accuracy": _summary([r["accuracy"] for r in runs]),
        "macro_f1": _summary([r["macro_f1"] for r in runs]),
        "runs": runs,
    }


def _scored(info: dict, seed, test_labels, pred, num_classes: int, start: float) -> dict:
    """One seed's training info with its seed, test scores and wall time added."""
    info.update(
        seed=int(seed),
        accuracy=accuracy(test_labels, pred),
        macro_f1=macro_f1(test_labels, pred, num_classes),
        seconds=round(time.perf_counter() - start, 2),
    )
    return info


def _subset(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def stratified_subset(labels: Sequence[int], frac: float, seed: int) -> np.ndarray:
    """Sorted indices of a random subset holding ``frac`` of each label's rows.

    Each label present keeps round(frac * n_label) of its n_label rows, at least one, drawn
    without replacement by ``numpy.random.default_rng(seed)`` (labels in increasing order), so
    a seed gives the same subset on every machine and every label stays present.
    """
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        keep = max(1, int(round(frac * len(rows))))
        picked.append(rng.choice(rows, size=keep, replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def _describe(path, labels, used) -> dict:
    return {
        "path": str(path),
        "sha256": data_io.sha256_file(path),
        "num_examples": int(len(labels)),
        "num_used": int(len(used)),
        "class_counts": np.bincount(labels[used]).tolist(),
    }


def _check_labels(train, test, train_labels_names, test_labels_names) -> None:
    """Raises `UsageError` unless both files name each label alike (case-insensitively), every
    test label occurs in training, and training holds at least 2 classes."""
    (tr_labels, tr_names), (te_labels, te_names) = train_labels_names, test_labels_names
    for label, name in te_names.items():
        if str(tr_names.get(label, name)).strip().lower() != str(name).strip().lower():
            raise UsageError(f"label {label} is {tr_names[label]!r} in {train}, {name!r} in {test}")
    missing = sorted(set(te_labels.tolist()) - set(tr_labels.tolist()))
    if missing:
        raise UsageError(f"test labels {missing} never occur in the training file {train}")
    if len(set(tr_labels.tolist())) < 2:
        raise UsageError(f"{train}: needs examples of at least 2 classes")


def _hyperparameters(mode: str, config: STMConfig, test_max_length: int, subset_seed: int):
    """What the results record as the STM's settings: the probe uses one truncation for both
    files and its own fixed settings, fine-tuning the whole `STMConfig`."""
    if mode == "probe":
        return {
            "encoder": config.encoder,
            "max_length": test_max_length,
            "test_max_length": test_max_length,
            "subset_seed": subset_seed,
            "probe": PROBE_HPARAMS,
        }
    return {
        **dataclasses.asdict(config),
        "test_max_length": test_max_length,
        "subset_seed": subset_seed,
    }


def evaluate_files(
    train: str | pathlib.Path,
    test: str | pathlib.Path,
    *,
    mode: str = "finetune",
    seeds: int | Sequence[int] = 3,
    config: STMConfig | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    test_max_length: int = 256,
    subset_seed: int = 0,
    out: str | pathlib.Path | None = None,
    mesh=None,
    cache_dir=None,
    progress: bool = False,
) -> dict:
    """Reads, checks and subsets two labelled JSONL files, runs :func:`evaluate_texts`.

    Args:
      seeds: a count N (seeds 0..N-1) or explicit seeds.
      max_train, max_test: evaluate on a random subset of this size (drawn with
        ``subset_seed``; the same subset for every seed).
      out: if given, the results JSON is written there.

    Returns:
      The results dict (also written to ``out``).

    Raises:
      UsageError: bad files (a `DataError` naming the file and line), a label named
        differently in the two files, a test label absent from training, fewer than 2 classes.
    """
    started = time.perf_counter()
    config = config or STMConfig()
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds:
        raise UsageError("need at least one seed")
    tr_texts, tr_labels, tr_names = read_examples(train, what="training")
    te_texts, te_labels, te_names = read_examples(test, what="test")
    _check_labels(train, test, (tr_labels, tr_names), (te_labels, te_names))
    num_classes = int(max(tr_labels.max(), te_labels.max())) + 1
    rng = np.random.default_rng(subset_seed)
    tr_used, te_used = _subset(len(tr_texts), max_train, rng), _subset(len(te_texts), max_test, rng)
    result = evaluate_texts(
        [tr_texts[i] for i in tr_used],
        tr_labels[tr_used],
        [te_texts[i] for i in te_used],
        te_labels[te_used],
        num_classes=num_classes,
        mode=mode,
        seeds=seeds,
        config=config,
        test_max_length=test_max_length,
        mesh=mesh,
        cache_dir=cache_dir,
        progress=progress,
    )
    result = {
        "accuracy": result["accuracy"],
        "macro_f1": result["macro_f1"],
        "mode": mode,
        "encoder": config.encoder,
        "seeds": seeds,
        "num_classes": num_classes,
        "label_names": {str(k): v for k, v in sorted({**tr_names, **te_names}.items())},
        "train": _describe(train, tr_labels, tr_used),
        "test": _describe(test, te_labels, te_used),
        "hyperparameters": _hyperparameters(mode, config, test_max_length, subset_seed),
        "runs": result["runs"],
        "wall_seconds": round(time.perf_counter() - started, 2),
        "devices": [str(d) for d in (mesh.devices.flat if mesh is not None else jax.devices()[:1])],
    }
    if out is not None:
        data_io.atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result
