"""``wasp-jax evaluate``: train the small task model on one file, test it on another.

    wasp-jax evaluate --train runs/x/synthetic.jsonl --test data/imdb/test.jsonl \\
        --seeds 3 --mode finetune --out runs/x/eval.json

Both files are JSON Lines with "text" and integer "label" (and optionally "label_name").
``finetune`` trains the BERT classifier of ``wasp_jax.stm`` once per seed (early stopping on
a split of the *training* file); ``probe`` embeds both files once with the frozen encoder and
fits a logistic-regression probe per seed (fast). The results JSON holds accuracy and macro-F1
(mean, sample std over seeds, per seed) and what was trained on what: paths, sizes, sha256,
class counts, mode, hyperparameters, wall time and devices. Python callers (the pipeline, the
table script) use :func:`evaluate_files` or :func:`evaluate_texts`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import time
from collections.abc import Sequence

import numpy as np

from wasp_jax.cli import UsageError

MODES = ("finetune", "probe")
PROBE_HPARAMS = {"steps": 300, "learning_rate": 0.05, "l2": 1e-4, "val_fraction": 0.1}


def read_labeled_jsonl(path: str | pathlib.Path) -> tuple[list[str], np.ndarray, dict[int, str]]:
    """(texts, int labels, {label: label_name}) of a JSONL file.

    Raises:
      UsageError: missing file, malformed JSON (with line number), missing or ill-typed
        "text"/"label", or a label_name that disagrees with an earlier line.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    texts, labels, names = [], [], {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(f"{path}: line {lineno} is not valid JSON ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise UsageError(f"{path}: line {lineno} has no string field 'text'")
        label = row.get("label")
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise UsageError(f"{path}: line {lineno}: 'label' must be an integer >= 0")
        name = row.get("label_name")
        if name is not None and names.setdefault(label, name) != name:
            raise UsageError(
                f"{path}: line {lineno}: label {label} is named {name!r}, earlier {names[label]!r}"
            )
        texts.append(row["text"])
        labels.append(label)
    if not texts:
        raise UsageError(f"{path}: no examples")
    return texts, np.asarray(labels, np.int32), names


def macro_f1(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Mean F1 over the classes that occur in ``labels`` or ``pred``."""
    scores = []
    for c in range(num_classes):
        tp = np.sum((pred == c) & (labels == c))
        fp, fn = np.sum((pred == c) & (labels != c)), np.sum((pred != c) & (labels == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


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
    config=None,
    test_max_length: int = 256,
    weights: Sequence[float] | None = None,
    mesh=None,
    cache_dir=None,
    progress: bool = False,
) -> dict:
    """Trains one STM per seed on the training texts and scores it on the test texts.

    Args:
      mode: "finetune" (``stm.train_classifier``) or "probe" (``stm.train_probe`` on frozen
        ``config.encoder`` embeddings, computed once for all seeds).
      config: ``stm.STMConfig`` (default STMConfig()).
      test_max_length: truncation of test texts (training uses ``config.max_length``).
      weights: optional per-sample loss weights for the training texts.

    Returns:
      {"accuracy": {"mean", "std", "per_seed"}, "macro_f1": {...}, "runs": [per-seed info]}.
    """
    import jax

    from wasp_jax import stm

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    config = config or stm.STMConfig()
    test_labels = np.asarray(test_labels, np.int32)
    runs = []
    if mode == "probe":
        from wasp_jax.embed import Embedder
        from wasp_jax.models.bert import load_bert

        loaded = load_bert(config.encoder, cache_dir=cache_dir, mesh=mesh)
        # embeddings are computed once here and shared by every seed; never cached on disk
        x_train = Embedder(loaded, mesh=mesh, max_length=config.max_length).embed(
            train_texts, progress=progress
        )
        x_test = Embedder(loaded, mesh=mesh, max_length=test_max_length).embed(
            test_texts, progress=progress
        )
    for seed in seeds:
        start = time.perf_counter()
        key = jax.random.key(seed)
        if mode == "probe":
            probe, info = stm.train_probe(
                x_train, train_labels, num_classes=num_classes, key=key, weights=weights,
                **PROBE_HPARAMS,
            )  # fmt: skip
            pred = probe.predict(x_test)
        else:
            clf, info = stm.train_classifier(
                train_texts, train_labels, num_classes=num_classes, key=key, config=config,
                weights=weights, mesh=mesh, cache_dir=cache_dir, progress=progress,
            )  # fmt: skip
            pred = clf.predict(test_texts, max_length=test_max_length)
            info.pop("val_indices", None)
        info.update(
            seed=int(seed),
            accuracy=float(np.mean(pred == test_labels)),
            macro_f1=macro_f1(test_labels, pred, num_classes),
            seconds=round(time.perf_counter() - start, 2),
        )
        runs.append(info)
        if progress:
            print(f"seed {seed}: accuracy {info['accuracy']:.4f} ({info['seconds']} s)")
    return {
        "accuracy": _summary([r["accuracy"] for r in runs]),
        "macro_f1": _summary([r["macro_f1"] for r in runs]),
        "runs": runs,
    }


def _subset(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def _describe(path, labels, used) -> dict:
    return {
        "path": str(path),
        "sha256": hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest(),
        "num_examples": int(len(labels)),
        "num_used": int(len(used)),
        "class_counts": np.bincount(labels[used]).tolist(),
    }


def evaluate_files(
    train: str | pathlib.Path,
    test: str | pathlib.Path,
    *,
    mode: str = "finetune",
    seeds: int | Sequence[int] = 3,
    config=None,
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
      UsageError: bad files, a test label absent from training, fewer than 2 classes.
    """
    import jax

    from wasp_jax import stm

    started = time.perf_counter()
    config = config or stm.STMConfig()
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds:
        raise UsageError("need at least one seed")
    tr_texts, tr_labels, tr_names = read_labeled_jsonl(train)
    te_texts, te_labels, te_names = read_labeled_jsonl(test)
    for label, name in te_names.items():
        if tr_names.get(label, name) != name:
            raise UsageError(f"label {label} is {tr_names[label]!r} in {train}, {name!r} in {test}")
    missing = sorted(set(te_labels.tolist()) - set(tr_labels.tolist()))
    if missing:
        raise UsageError(f"test labels {missing} never occur in the training file {train}")
    if len(set(tr_labels.tolist())) < 2:
        raise UsageError(f"{train}: needs examples of at least 2 classes")
    num_classes = int(max(tr_labels.max(), te_labels.max())) + 1
    rng = np.random.default_rng(subset_seed)
    tr_used, te_used = _subset(len(tr_texts), max_train, rng), _subset(len(te_texts), max_test, rng)
    result = evaluate_texts(
        [tr_texts[i] for i in tr_used], tr_labels[tr_used],
        [te_texts[i] for i in te_used], te_labels[te_used],
        num_classes=num_classes, mode=mode, seeds=seeds, config=config,
        test_max_length=test_max_length, mesh=mesh, cache_dir=cache_dir, progress=progress,
    )  # fmt: skip
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
        "hyperparameters": {
            **dataclasses.asdict(config), "test_max_length": test_max_length,
            "subset_seed": subset_seed,
        },
        "runs": result["runs"],
        "wall_seconds": round(time.perf_counter() - started, 2),
        "devices": [str(d) for d in (mesh.devices.flat if mesh is not None else jax.devices()[:1])],
    }  # fmt: skip
    if mode == "probe":
        keep = ("encoder", "max_length")
        result["hyperparameters"] = {
            **{k: v for k, v in result["hyperparameters"].items() if k in keep},
            "test_max_length": test_max_length, "subset_seed": subset_seed,
            "probe": PROBE_HPARAMS,
        }  # fmt: skip
    if out is not None:
        pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def register_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, help="training JSONL (text, label)")
    parser.add_argument("--test", required=True, help="test JSONL (text, label)")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    parser.add_argument("--mode", choices=MODES, default="finetune")
    parser.add_argument("--out", help="write the results JSON here (else print it)")
    parser.add_argument("--max-train", type=int, help="random subset of the training file")
    parser.add_argument("--max-test", type=int, help="random subset of the test file")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default 3)")
    parser.add_argument("--encoder", help="all-minilm-l6-v2 (default), tiny-bert or BERT folder")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 5e-5)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default 16)")
    parser.add_argument("--max-length", type=int, help="training truncation (default 128)")
    parser.add_argument("--test-max-length", type=int, default=256, help="test truncation")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch / per-seed lines")


def main_evaluate(args: argparse.Namespace) -> int:
    from wasp_jax import stm

    overrides = {
        "epochs": args.epochs, "encoder": args.encoder, "learning_rate": args.lr,
        "batch_size": args.batch_size, "max_length": args.max_length,
    }  # fmt: skip
    for flag in ("seeds", "max_train", "max_test", "epochs", "batch_size", "max_length",
                 "test_max_length"):  # fmt: skip
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    try:
        config = stm.STMConfig(**{k: v for k, v in overrides.items() if v is not None})
        result = evaluate_files(
            args.train, args.test, mode=args.mode, seeds=args.seeds, config=config,
            max_train=args.max_train, max_test=args.max_test, out=args.out,
            test_max_length=args.test_max_length, progress=not args.quiet,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    acc, f1 = result["accuracy"], result["macro_f1"]
    print(
        f"{result['mode']} on {result['train']['num_used']} texts, tested on "
        f"{result['test']['num_used']}: accuracy {acc['mean']:.4f} +/- {acc['std']:.4f}, "
        f"macro-F1 {f1['mean']:.4f} +/- {f1['std']:.4f} ({len(result['seeds'])} seeds)"
    )
    if args.out:
        print(f"wrote {args.out}")
    else:
        print(json.dumps(result, indent=2))
    return 0
