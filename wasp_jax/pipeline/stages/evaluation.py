"""The end-of-run evaluation: the synthetic set, and what it is compared against.

With `eval.test_path` set, a small task model (STM) is trained per seed on (files in the
workdir's `release/`)

* the synthetic set (`synthetic.jsonl` -> `eval.json`);
* the zero-shot start, the run's round-0 samples (`zero_shot_start.jsonl` ->
  `eval_baselines.json`), unless `eval.baselines` is off: the same PLMs without any private
  data; and the zero-shot set of equal size (`zero_shot_equal.jsonl`: round 0 plus the extra
  zero-shot rows the runner generated after the rounds, no privacy spent), so that the
  difference is what the private data added, not what more rows add;
* with `eval.dp_classifiers` (opt-in), two DP classifiers trained on the private data at
  the run's own (epsilon, delta), each a release of its own recorded in the run's ledger
  (`wasp_jax.pipeline.stages.eval_classifiers` -> rows of `eval_baselines.json`): what the
  same budget buys as a classifier, spent in addition to the run's;
* with `eval.only_private` (opt-in), the private texts themselves (OnlyPrivate ->
  `private/eval_only_private.json`). That score is computed from the private data without
  noise: it is NOT differentially private, so it goes to the workdir's private part, never
  to `release/`. The private texts are used in memory only; nothing about them but the test
  scores is written.

Every one is tested on the same real test rows (the same `eval.max_test` subset) with the
same seeds; the report shows mean and std over the seeds. With `eval.subsample_draws` (3 by
default) the synthetic set and each zero-shot baseline are also scored on that many random
subsets of their rows (`eval.subsample_frac` of each class, draw i seeded by i), one STM per
draw with the seeds taken in turn, written to temporary files that are not kept; their
scores (`accuracy_draws`, `macro_f1_draws`) and spread (`subsample`: mean and std over the
draws) join the set's scores. A deterministic probe gives the same score for every seed, so
the spread over draws is the one that says how much a score moves with the training data.
"""

from __future__ import annotations

import logging
import pathlib
import tempfile

import numpy as np

from wasp_jax import data as data_io
from wasp_jax.pipeline.run import spread
from wasp_jax.pipeline.run.private import load_private
from wasp_jax.pipeline.stages.eval_classifiers import dp_classifier_rows
from wasp_jax.stm.evaluate import (
    evaluate_files,
    evaluate_texts,
    read_examples,
    stratified_subset,
)

log = logging.getLogger("wasp_jax")

#: The file of the baselines' scores (the synthetic set's stay in eval.json).
BASELINES = "eval_baselines.json"
#: The equal-size zero-shot set (round 0 plus extra zero-shot rows) and its row's name.
EQUAL_SIZE, EQUAL_NAME = "zero_shot_equal.jsonl", "zero-shot (equal size)"
#: OnlyPrivate's scores, in the workdir's private part (not DP: never in release/).
ONLY_PRIVATE = "eval_only_private.json"


def evaluate_run(inputs, state, committer) -> None:
    """Scores the synthetic set and its baselines; see the module docstring.

    In a multi-process run every process calls this (a fine-tuned STM trains data parallel
    over all their devices); process 0 writes the files, the others read their training
    files from a temporary folder of their own. ``committer`` (the run's `Committer`) writes
    the ledger and the checkpoint of the DP classifiers' releases.
    """
    if not inputs.cfg.eval.test_path:
        return
    if inputs.writer:
        _evaluate(inputs, state, committer, inputs.release)
        return
    rows = state.population.rows(inputs.task, list(inputs.plm_names))
    with tempfile.TemporaryDirectory(prefix="wasp-jax-eval-") as tmp:
        tmp = pathlib.Path(tmp)
        data_io.atomic_write_jsonl(tmp / "synthetic.jsonl", rows)
        _evaluate(inputs, state, committer, tmp)


def _evaluate(r, state, committer, wd: pathlib.Path) -> None:
    ev, cfg = r.cfg.eval, r.cfg
    common = dict(
        mesh=spread.stm_mesh(ev.mode),
        mode=ev.mode,
        seeds=list(ev.seeds),
        max_test=ev.max_test or None,
        cache_dir=cfg.runtime.cache_dir or None,
        progress=cfg.runtime.progress,
    )
    seeds = len(ev.seeds)
    log.info("evaluating the synthetic data on %s (%s, %d seeds)", ev.test_path, ev.mode, seeds)
    res = _scored(wd / "synthetic.jsonl", ev, common)
    if r.writer:
        data_io.atomic_write_json(wd / "eval.json", res)
    out = {}
    if ev.baselines and cfg.generation.rounds > 0:  # round 0 is the zero-shot start
        out.update(_zero_shot(r, state, wd, common))
    if ev.dp_classifiers and r.method.reads_private_data:
        log.info("scoring the DP classifiers at the run's epsilon (spent in addition)")
        te_texts, te_labels = _test_rows(ev.test_path, common["max_test"])
        out.update(dp_classifier_rows(r, state, committer, te_texts, te_labels))
    if out and r.writer:
        data_io.atomic_write_json(wd / BASELINES, out)
    if ev.only_private and r.method.reads_private_data:
        log.info("evaluating OnlyPrivate (an STM on the private texts: NOT DP)")
        only = {"OnlyPrivate (not DP)": _only_private(r, common)}
        if r.writer:
            # a statistic of the private data without noise: the private part only
            path = r.private_dir / ONLY_PRIVATE
            data_io.atomic_write_json(path, only)
            log.info("OnlyPrivate's score (NOT DP) is in %s, not in release/: never share it", path)


def _zero_shot(r, state, wd: pathlib.Path, common: dict) -> dict:
    """The zero-shot start and, when the runner drew its extra rows, the equal-size set."""
    ev, out = r.cfg.eval, {}
    rows = [row for row in state.population.rows(r.task, list(r.plm_names)) if row["round"] == 0]
    path = data_io.atomic_write_jsonl(wd / "zero_shot_start.jsonl", rows)
    log.info("evaluating the zero-shot start (%d round-0 samples)", len(rows))
    res = _scored(path, ev, common)
    out["zero-shot start"] = _row(res, len(rows), dp=True, note="round 0 of this run")
    if state.baseline:
        names = list(r.plm_names)
        extra = [
            {**row, "label_name": r.task.labels[row["label"]], "plm": names[row["plm"]], "round": 0}
            for row in state.baseline
        ]
        equal = data_io.atomic_write_jsonl(wd / EQUAL_SIZE, rows + extra)
        log.info("evaluating the equal-size zero-shot set (%d samples)", len(rows) + len(extra))
        res = _scored(equal, ev, common)
        out[EQUAL_NAME] = _row(
            res,
            len(rows) + len(extra),
            dp=True,
            note="zero-shot samples of the same PLMs, as many as the synthetic set",
        )
    return out


def _scored(path: pathlib.Path, ev, common: dict) -> dict:
    """A training file's scores over the seeds, plus its subsample draws'."""
    res = evaluate_files(path, ev.test_path, **common)
    return res | subsample_draws(path, ev.test_path, common, ev.subsample_draws, ev.subsample_frac)


def subsample_draws(path, test_path, common: dict, draws: int, frac: float) -> dict:
    """Scores of `draws` stratified random subsets of a training file ({} for 0 draws).

    Draw i keeps ``frac`` of each label's rows (`stratified_subset`, seed i) and trains one
    STM with seed ``common["seeds"][i % len(seeds)]``; the test rows are those of the full
    evaluation (same ``max_test`` subset). The subsets are written to a temporary folder
    that is removed afterwards.

    Returns:
      {"accuracy_draws": [...], "macro_f1_draws": [...], "subsample": {"draws", "frac",
      "seeds", "n_train", "accuracy": {"mean", "std"}, "macro_f1": {"mean", "std"}}} (std:
      sample std over the draws, ddof = 1; 0 for one draw).
    """
    if draws < 1:
        return {}
    rows = data_io.read_jsonl(path, what="training")
    labels = np.asarray([int(row["label"]) for row in rows])
    seeds, acc, f1, sizes, used_seeds = list(common["seeds"]), [], [], [], []
    log.info(
        "scoring %d subsample draws (%.0f%% of each class) of %s",
        draws,
        100 * frac,
        pathlib.Path(path).name,
    )
    with tempfile.TemporaryDirectory(prefix="wasp-jax-draws-") as tmp:
        for i in range(draws):
            used = stratified_subset(labels, frac, seed=i)
            part = pathlib.Path(tmp) / f"{pathlib.Path(path).stem}.draw{i}.jsonl"
            data_io.atomic_write_jsonl(part, [rows[j] for j in used])
            seed = seeds[i % len(seeds)]
            res = evaluate_files(part, test_path, **{**common, "seeds": [seed]})
            acc.append(float(res["accuracy"]["mean"]))
            f1.append(float(res["macro_f1"]["mean"]))
            sizes.append(int(len(used)))
            used_seeds.append(seed)
    summary = {
        "draws": draws,
        "frac": frac,
        "stratified": True,
        "seeds": used_seeds,
        "n_train": sizes,
        "accuracy": _spread(acc),
        "macro_f1": _spread(f1),
    }
    return {"accuracy_draws": acc, "macro_f1_draws": f1, "subsample": summary}


def _spread(values: list[float]) -> dict:
    arr = np.asarray(values, np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def _row(res: dict, n_train: int, *, dp: bool, note: str) -> dict:
    keep = ("accuracy", "macro_f1", "mode", "seeds", "test")
    keep += ("accuracy_draws", "macro_f1_draws", "subsample")
    return {**{k: res[k] for k in keep if k in res}, "n_train": n_train, "dp": dp, "note": note}


def _test_rows(test_path, limit: int | None) -> tuple[list[str], np.ndarray]:
    """The test texts and labels every score uses: the subset `evaluate_files` draws
    (subset_seed 0, no training subset), or all rows."""
    te_texts, te_labels, _ = read_examples(test_path, what="test")
    if limit is None or limit >= len(te_texts):
        used = np.arange(len(te_texts))
    else:
        used = np.sort(np.random.default_rng(0).choice(len(te_texts), size=limit, replace=False))
    return [te_texts[i] for i in used], te_labels[used]


def _only_private(r, common: dict) -> dict:
    cfg = r.cfg
    texts, labels, _ = load_private(cfg.data, r.task, seed=cfg.seed)
    te_texts, te_labels = _test_rows(cfg.eval.test_path, common["max_test"])
    res = evaluate_texts(
        texts,
        labels,
        te_texts,
        te_labels,
        num_classes=r.task.num_classes,
        mode=common["mode"],
        seeds=common["seeds"],
        cache_dir=common["cache_dir"],
        progress=common["progress"],
        mesh=None,  # on this process's device: private texts never cross the network
    )
    n = len(texts)
    del texts
    return {
        "accuracy": res["accuracy"],
        "macro_f1": res["macro_f1"],
        "mode": common["mode"],
        "seeds": list(common["seeds"]),
        "n_train": n,
        "dp": False,
        "note": "trained on the private texts without noise: NOT differentially private",
    }
