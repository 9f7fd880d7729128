"""The four-task table: was the private data worth it, at equal size and equal epsilon?

    python -m experiments.table_tasks [--tasks imdb,sst2,yelp_category,yelp_rating]
        [--seeds 1] [--methods wasp,wasp_plus,wasp_proto,wasp_proto+os] [--budget 80]
        [--rounds 1] [--oversample 2] [--max-test 500]
        [--out experiments/results] [--workroot runs/tasks] [--render-only] [--check]

Setting (live, on this machine): the two offline PLMs (SmolLM2-135M-Instruct, Gemma-3-270M),
the all-MiniLM-L6-v2 embedder, epsilon = 4, delta = 1e-5 (add/remove), 100 private texts
drawn class-balanced from each task's train file in `../shared/data`, every synthetic set
``--budget`` rows. Rows:

* ``zero-shot``: multi-PLM zero-shot of the same PLMs as large as the synthetic sets (the
  WASP run's round 0 plus its equal-size zero-shot rows, ``zero_shot_equal.jsonl``); no
  private data;
* ``wasp``, ``wasp_plus``, ``wasp_proto``: the methods through the runner, at the run's
  (epsilon, delta);
* ``wasp_proto+os``: WASP-proto generating ``--oversample`` candidates per kept row and
  keeping the top by prototype margin (``proto.oversample``);
* ``dp-centroid``, ``dp-sgd-probe``: the DP classifiers of
  `wasp_jax.pipeline.stages.vote_baselines` on the same private embeddings at the same
  (epsilon, delta), each noise draw from a fresh secret;
* ``dp-centroid-16``: the same classifier in the 16-dimensional public subspace WASP-proto
  uses (mean and principal directions of the seed's equal-size zero-shot set; every private
  embedding centred, projected and unit-normed): the stronger bar, at the same budget;
* ``only-private``: the probe on the private texts without noise (NOT DP).

Every synthetic set is scored by the same STM: the linear probe (`wasp_jax.stm.probe`) on
frozen MiniLM embeddings (128 tokens), tested on the first ``--max-test`` rows of the task's
test file. Spreads: over generation seeds when there are several; with one seed, over
``DRAWS`` subsample draws of 80 % of the synthetic set (what varies with which rows a run
happens to keep). The DP classifiers' spread is over ``DRAWS`` noise draws.

One process loads every model once and shares it by all runs; an identical generation call
(same prompts, key and decoding arguments: the runs of one seed share their zero-shot start)
returns the first call's output (`experiments.table_imdb.MemoGenerator`), so a cell's time
counts only the rows it added. Each cell's JSON (with its wall time) goes to
``<workroot>/cells/``; finished cells are skipped
on a rerun, and the table (``tasks_table.md`` / ``.json`` in ``--out``) is rebuilt after each.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

from experiments.table_imdb import MemoGenerator
from wasp_jax import config as config_lib
from wasp_jax import data as data_io
from wasp_jax.outputs.comparison import beyond_spread
from wasp_jax.pipeline.methods import resolve
from wasp_jax.pipeline.run import runner, sizing
from wasp_jax.pipeline.stages import prototypes
from wasp_jax.pipeline.stages import vote_baselines as vb
from wasp_jax.pipeline.stages.prepare import subsample
from wasp_jax.privacy.noise_source import NoiseSource
from wasp_jax.stm import metrics
from wasp_jax.stm.probe import train_probe
from wasp_jax.tasks import load_task

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = data_io.shared_data_dir()
TASKS = {
    "imdb": "imdb",
    "sst2": "sst2",
    "yelp_category": "yelp",
    "yelp_rating": "yelp",
}
PLMS = ("smollm2-135m-instruct", "gemma3-270m")
EMBEDDER, MAX_LENGTH = "all-minilm-l6-v2", 128
EPS, DELTA, NUM_PRIVATE, DRAWS, FRACTION = 4.0, 1e-5, 100, 5, 0.8
#: Continuations are capped at this many new tokens (the Yelp tasks' own default is 300, three
#: times IMDb's: on the 2-core machine one Yelp round took longer than a whole IMDb run).
MAX_NEW_TOKENS = 100
GENERATIVE = ("wasp", "wasp_plus", "wasp_proto", "wasp_proto+os", "wasp_proto+tune")
PRIVATE_METHODS = GENERATIVE
ROWS = (
    ("zero-shot", "multi-PLM zero-shot, equal size (no private data)"),
    ("wasp", "WASP"),
    ("wasp_plus", "WASP+"),
    ("wasp_proto", "WASP-proto"),
    ("wasp_proto+os", "WASP-proto, oversampled"),
    ("wasp_proto+tune", "WASP-proto, PLMs tuned on DP feedback (LoRA + DPO)"),
    ("zero-shot-tuned", "multi-PLM zero-shot from the tuned PLMs, equal size"),
    ("dp-centroid", "DP nearest-centroid classifier"),
    ("dp-centroid-16", "DP nearest-centroid classifier, 16-dim public subspace"),
    ("dp-sgd-probe", "DP-SGD linear probe"),
    ("only-private", "OnlyPrivate (NOT DP)"),
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data


def prepare_data(task_name: str, folder: pathlib.Path, max_test: int) -> dict:
    """The task's private file (100 class-balanced train texts) and test file (the first
    `max_test` test rows), with `label` already the task's label."""
    task = load_task(task_name)
    src = SHARED / TASKS[task_name]
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"private": folder / "private.jsonl", "test": folder / "test.jsonl"}
    if all(p.exists() for p in paths.values()):
        return paths
    for split, path, limit in (("train", paths["private"], 0), ("test", paths["test"], max_test)):
        rows = data_io.read_jsonl(src / f"{split}.jsonl", what=f"{task_name} {split}")
        rows = [{"text": r["text"], "label": int(task.label_of(r)), "label_name": ""} for r in rows]
        for r in rows:
            r["label_name"] = task.labels[r["label"]]
        if split == "train":
            y = np.asarray([r["label"] for r in rows])
            per_class = NUM_PRIVATE // task.num_classes
            keep = np.concatenate(
                [np.flatnonzero(y == c)[:per_class] for c in range(len(task.labels))]
            )
            order = subsample(y[keep], num_classes=task.num_classes, seed=0)
            rows = [rows[i] for i in keep[order]]
        else:
            rows = rows[:limit]
        if task.label_field != "label":  # the task reads its own field: write it as well
            for r in rows:
                r[task.label_field] = r["label"] - task.label_offset
        data_io.atomic_write_jsonl(path, rows)
    return paths


# ----------------------------------------------------------------------------- runs


def sizes(task_name: str, budget: int, rounds: int) -> dict:
    """Q, S and the WASP+ clusters that the first vote's candidates per class allow."""
    c = load_task(task_name).num_classes
    per_class = budget // (rounds + 1) // c
    q = max(1, min(8, per_class // 2))
    s = max(1, min(4, per_class // 2))
    return {
        "voting.q": q,
        "selection.s": s,
        "plus.clusters": max(1, min(8, per_class // 2)),
    }


def build_config(task_name, method, seed, paths, args) -> config_lib.WaspConfig:
    base = config_lib.base_config()
    over, tune = 1, False
    if method == "wasp_proto+os":
        method, over = "wasp_proto", args.oversample
    if method == "wasp_proto+tune":
        method, tune = "wasp_proto", True
    if method == "zero_shot_tuned":  # round 0 only, from whatever weights the PLMs hold
        method = "multi_zeroshot"
    changes = {
        "method": method,
        "seed": seed,
        "task": task_name,
        "data.private_path": str(paths["private"]),
        "generation.plms": PLMS,
        "generation.budget": args.budget,
        "generation.rounds": args.rounds,
        "generation.max_new_tokens": min(MAX_NEW_TOKENS, load_task(task_name).max_new_tokens),
        "embedder.name": EMBEDDER,
        "privacy.epsilon": EPS,
        "privacy.delta": DELTA,
        "eval.test_path": str(paths["test"]) if method == "wasp" else "",
        "eval.seeds": (0,),
        "eval.baselines": method == "wasp",
        "runtime.progress": False,
        **sizes(task_name, args.budget, args.rounds),
    }
    if method == "wasp_proto":
        changes["proto.oversample"] = over
    if tune:
        changes |= {"tune.enabled": True, "tune.steps": args.tune_steps}
    if method == "multi_zeroshot":
        changes |= {"generation.rounds": 0}
        changes = {k: v for k, v in changes.items() if not k.startswith(("voting.", "selection."))}
    return config_lib.replace(base, **changes)


def check_configs(args) -> None:
    """Every cell's config is accepted by its method and sized for its first vote."""
    for task_name in args.tasks:
        paths = {"private": pathlib.Path("p.jsonl"), "test": pathlib.Path("t.jsonl")}
        for method in GENERATIVE:
            cfg = build_config(task_name, method, 0, paths, args)
            m = resolve(cfg)
            need = m.first_vote_need(cfg)
            if need is not None:
                sizing.check_sizing(cfg, load_task(task_name).num_classes, need)
            print(task_name, method, "ok", sizes(task_name, args.budget, args.rounds))


# ----------------------------------------------------------------------------- scoring


class Models:
    """The models every run and score of the process shares (loaded on first use)."""

    def __init__(self, cache: pathlib.Path):
        self.cache, self.gens, self.emb = cache, {}, None

    def load_generator(self, spec, **kw):
        from wasp_jax.models.generator import load_generator

        if spec not in self.gens:
            self.gens[spec] = MemoGenerator(load_generator(spec, **kw))
        return self.gens[spec]

    def load_embedder(self, spec=None, **kw):
        from wasp_jax.models.embedder import load_embedder

        if self.emb is None:
            self.emb = load_embedder(EMBEDDER, max_length=MAX_LENGTH, cache_path=str(self.cache))
        return self.emb

    def hooks(self) -> runner.Hooks:
        return runner.Hooks(load_generator=self.load_generator, load_embedder=self.load_embedder)


MODELS: Models | None = None


def models(cache: pathlib.Path) -> Models:
    global MODELS
    if MODELS is None:
        MODELS = Models(cache)
    return MODELS


class Scorer:
    """The probe STM on frozen embeddings, tested on one task's test rows."""

    def __init__(self, task_name: str, paths: dict, cache: pathlib.Path):
        self.task = load_task(task_name)
        self.emb = models(cache).load_embedder()
        test = data_io.read_jsonl(paths["test"], what="test")
        self.test_x = self.embed([r["text"] for r in test])
        self.test_y = np.asarray([r["label"] for r in test], np.int32)
        self.paths = paths

    def embed(self, texts, cache=True) -> np.ndarray:
        parts = [self.emb.embed(texts[i : i + 256], cache=cache) for i in range(0, len(texts), 256)]
        return np.concatenate(parts).astype(np.float32)

    def score(self, pred) -> dict:
        c = self.task.num_classes
        return {
            "accuracy": float(metrics.accuracy(self.test_y, pred)),
            "macro_f1": float(metrics.macro_f1(self.test_y, pred, c)),
        }

    def probe(self, x, y) -> dict:
        probe, _ = train_probe(x, y, num_classes=self.task.num_classes)
        return self.score(probe.predict(self.test_x))

    def synthetic(self, rows) -> dict:
        """The full set's score and the scores of DRAWS subsamples of FRACTION of its rows."""
        x = self.embed([r["text"] for r in rows])
        y = np.asarray([r["label"] for r in rows], np.int32)
        out = {"n_train": len(rows), **self.probe(x, y), "draws": []}
        for d in range(DRAWS):
            rng = np.random.default_rng(1000 + d)
            idx = np.sort(rng.choice(len(rows), size=int(FRACTION * len(rows)), replace=False))
            out["draws"].append(self.probe(x[idx], y[idx])["accuracy"])
        return out

    def private(self):
        rows = data_io.read_jsonl(self.paths["private"], what="private")
        x = self.embed([r["text"] for r in rows], cache=False)  # private: never cached
        return x, np.asarray([r["label"] for r in rows], np.int32)

    def dp_subspace(self, public_rows, dims: int = 16) -> dict:
        """The DP centroid classifier in the public subspace of `public_rows` (DRAWS fresh
        noise draws)."""
        from wasp_jax.pipeline.stages import prototypes

        space = prototypes.public_subspace(self.embed([r["text"] for r in public_rows]), dims)
        px, py = self.private()
        z, tz = prototypes.project(px, space), prototypes.project(self.test_x, space)
        dp = {"num_classes": self.task.num_classes, "epsilon": EPS, "delta": DELTA}
        acc = []
        for _ in range(DRAWS):
            sums, _ = vb.dp_centroid_classifier(NoiseSource.fresh(), z, py, **dp)
            acc.append(self.score(vb.centroid_predict(sums, tz))["accuracy"])
        del px, py, z
        return {"accuracy": float(np.mean(acc)), "draws": acc}

    def dp_rows(self) -> dict:
        """The DP classifiers (DRAWS noise draws, each from a fresh secret) and OnlyPrivate."""
        px, py = self.private()
        c = self.task.num_classes
        dp = {"num_classes": c, "epsilon": EPS, "delta": DELTA}
        cent, sgd = [], []
        for _ in range(DRAWS):
            sums, _ = vb.dp_centroid_classifier(NoiseSource.fresh(), px, py, **dp)
            cent.append(self.score(vb.centroid_predict(sums, self.test_x))["accuracy"])
            k, b, _ = vb.dp_sgd_probe(NoiseSource.fresh(), px, py, **dp)
            sgd.append(self.score((self.test_x @ k + b).argmax(1))["accuracy"])
        only = self.probe(px, py)
        del px, py
        return {
            "dp-centroid": {"accuracy": float(np.mean(cent)), "draws": cent},
            "dp-sgd-probe": {"accuracy": float(np.mean(sgd)), "draws": sgd},
            "only-private": {"accuracy": only["accuracy"], "macro_f1": only["macro_f1"]},
        }


# ----------------------------------------------------------------------------- cells


def run_method(task_name, method, seed, paths, args) -> dict:
    cfg = build_config(task_name, method, seed, paths, args)
    workdir = args.workroot / task_name / f"{method}_s{seed}"
    for gen in MODELS.gens.values():
        gen.tag = str(workdir)
    t0 = time.perf_counter()
    res = runner.run(cfg, workdir, hooks=MODELS.hooks())
    wall = time.perf_counter() - t0
    rows = data_io.read_jsonl(res.synthetic_path, what="synthetic")
    metrics = data_io.read_jsonl(res.release / "metrics.jsonl")
    # a run finished by an earlier process is only read back: its own stage seconds then
    staged = sum(sum((m.get("stage_seconds") or {}).values()) for m in metrics)
    out = {
        "workdir": str(workdir),
        "seconds": max(wall, staged),
        "epsilon_spent": res.epsilon_spent,
    }
    out |= {"rows": rows, "metrics": metrics}
    if cfg.tune.enabled:  # zero-shot rows from the tuned PLMs, then back to the untuned ones
        zs = run_method(task_name, "zero_shot_tuned", seed, paths, args)
        out["tuned_zero_shot"] = zs
        untune()
    return out


def finished_outputs(workdir: pathlib.Path) -> dict:
    """The synthetic rows and metrics a finished run wrote."""
    release = workdir / "release"
    return {
        "rows": data_io.read_jsonl(release / "synthetic.jsonl"),
        "metrics": data_io.read_jsonl(release / "metrics.jsonl"),
    }


def untune() -> None:
    """Puts every shared PLM back to its untuned weights (the next run starts from them)."""
    for gen in MODELS.gens.values():
        base = getattr(gen.inner, "base_layers", None)
        if base is not None:
            gen.inner.layers, gen.inner.base_layers = list(base), None
        gen.inner.tuned_rounds = set()


def tuning_diagnostics(ran: dict, scorer) -> dict:
    """Per round, the share of rows the noisy prototypes put in their own class (margin > 0,
    in the run's public subspace), and each PLM's tuning record (pairs, loss, seconds) with
    its round's generation seconds beside it."""
    ckpt = pathlib.Path(ran["workdir"]) / "private" / "checkpoint"
    protos = np.load(ckpt / "class_prototypes.npy")
    space_file = ckpt / "prototype_space.npy"
    space = np.load(space_file) if space_file.exists() else None
    rows = ran["rows"]
    emb = prototypes.project(scorer.embed([r["text"] for r in rows]), space)
    margin = prototypes.margins(emb, [r["label"] for r in rows], protos)
    rounds = np.asarray([r["round"] for r in rows])
    out = {
        "agreement_by_round": {
            str(t): float(np.mean(margin[rounds == t] > 0)) for t in sorted(set(rounds.tolist()))
        }
    }
    for m in ran["metrics"]:
        if m.get("tuning"):
            out[f"round_{m['round']}"] = {
                "tuning": m["tuning"],
                "stage_seconds": m.get("stage_seconds"),
            }
    return out


def cell(task_name: str, seed: int, args, scorer: Scorer, out: dict | None = None) -> dict:
    """All rows of one (task, generation seed); with `out`, a cell written before, only the
    rows it lacks."""
    out = out or {"task": task_name, "seed": seed, "rows": {}, "seconds": {}}
    for method in args.methods:
        if method in out["rows"]:
            continue
        log(f"{task_name} seed {seed}: {method}")
        ran = run_method(task_name, method, seed, scorer.paths, args)
        out["rows"][method] = scorer.synthetic(ran["rows"]) | {
            "epsilon_spent": ran["epsilon_spent"]
        }
        out["seconds"][method] = round(ran["seconds"], 1)
        if method.startswith("wasp_proto"):
            out.setdefault("diagnostics", {})[method] = tuning_diagnostics(ran, scorer)
        if "tuned_zero_shot" in ran:
            out["rows"]["zero-shot-tuned"] = scorer.synthetic(ran["tuned_zero_shot"]["rows"])
            out["seconds"]["zero-shot-tuned"] = round(ran["tuned_zero_shot"]["seconds"], 1)
        if method == "wasp":
            equal = pathlib.Path(ran["workdir"]) / "release" / "zero_shot_equal.jsonl"
            zero = data_io.read_jsonl(equal, what="zero-shot")
            out["rows"]["zero-shot"] = scorer.synthetic(zero)
            out["dp-centroid-16"] = scorer.dp_subspace(zero)
            base = json.loads((pathlib.Path(ran["workdir"]) / "release" / "eval.json").read_text())
            out["runner_eval_wasp"] = base.get("accuracy")
        log(f"  {method}: {out['rows'][method]['accuracy']:.3f} in {ran['seconds']:.0f} s")
    for method in args.methods:  # a prototype run of an earlier cell: its diagnostics too
        if method.startswith("wasp_proto") and method not in out.get("diagnostics", {}):
            work = args.workroot / task_name / f"{method}_s{seed}"
            ran = {"workdir": str(work), **finished_outputs(work)}
            out.setdefault("diagnostics", {})[method] = tuning_diagnostics(ran, scorer)
    return out


# ----------------------------------------------------------------------------- table


def _mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarise(cells: list[dict], dp: dict[str, dict]) -> dict:
    """{task: {row: {mean, std, spread_from, n_train, seconds}}} and the targets."""
    table = {}
    for task_name in sorted({c["task"] for c in cells} | set(dp)):
        mine = [c for c in cells if c["task"] == task_name]
        rows = {}
        for key, _ in ROWS:
            if key == "dp-centroid-16":
                draws = [a for c in mine if key in c for a in c[key]["draws"]]
                if draws:
                    m, s = _mean_std(draws)
                    rows[key] = {"mean": m, "std": s, "spread_from": "noise draws and seeds"}
                continue
            if key in ("dp-centroid", "dp-sgd-probe", "only-private"):
                if task_name in dp:
                    r = dp[task_name][key]
                    m, s = _mean_std(r.get("draws", [r["accuracy"]]))
                    rows[key] = {"mean": m, "std": s, "spread_from": "noise draws"}
                    if key == "only-private":
                        rows[key]["spread_from"] = "deterministic"
                continue
            got = [c["rows"][key] for c in mine if key in c["rows"]]
            if not got:
                continue
            if len(got) > 1:
                m, s = _mean_std([g["accuracy"] for g in got])
                frm = f"{len(got)} generation seeds"
            else:  # like a run's report: the draws' mean and spread (the full set beside)
                m, s = _mean_std(got[0]["draws"])
                frm = f"{DRAWS} subsample draws of {int(FRACTION * 100)} %"
            secs = [c["seconds"].get(key) for c in mine if c["seconds"].get(key)]
            rows[key] = {
                "mean": m,
                "std": s,
                "full_set": float(np.mean([g["accuracy"] for g in got])),
                "spread_from": frm,
                "n_train": int(np.mean([g["n_train"] for g in got])),
                "seconds": float(np.mean(secs)) if secs else None,
            }
        table[task_name] = {"rows": rows, "targets": targets(rows)}
    return table


def targets(rows: dict) -> dict:
    """The best private method against zero-shot (>= 3 points and beyond the spread: the
    difference exceeds the sum of the two stds, the rule of a run's report) and against the
    DP centroid classifier."""
    private = {k: rows[k] for k in PRIVATE_METHODS if k in rows}
    if not private or "zero-shot" not in rows:
        return {}
    best = max(private, key=lambda k: private[k]["mean"])
    zs, b = rows["zero-shot"], private[best]
    diff = 100 * (b["mean"] - zs["mean"])
    spread = 100 * (b["std"] + zs["std"])
    out = {
        "best_private": best,
        "gain_over_zero_shot_points": round(diff, 2),
        "spread_points": round(spread, 2),
        "beats_zero_shot_by_3_beyond_spread": bool(
            diff >= 3 and beyond_spread(diff, 100 * b["std"], 100 * zs["std"])
        ),
    }
    if "dp-centroid" in rows:
        gap = 100 * (b["mean"] - rows["dp-centroid"]["mean"])
        out["minus_dp_centroid_points"] = round(gap, 2)
        out["reaches_dp_centroid"] = bool(gap >= 0)
    if "dp-centroid-16" in rows:
        out["minus_dp_centroid_16_points"] = round(
            100 * (b["mean"] - rows["dp-centroid-16"]["mean"]), 2
        )
    if "wasp_proto+tune" in rows and "wasp_proto" in rows:
        tuned, plain = rows["wasp_proto+tune"], rows["wasp_proto"]
        gain = 100 * (tuned["mean"] - plain["mean"])
        out["tuning_gain_points"] = round(gain, 2)
        out["tuning_adds_3_beyond_spread"] = bool(
            gain >= 3 and beyond_spread(gain, 100 * tuned["std"], 100 * plain["std"])
        )
    return out


def render(table: dict, args) -> str:
    tasks = list(table)
    lines = [
        "# Four tasks, equal size, epsilon 4 (live, SmolLM2-135M + Gemma-3-270M, MiniLM probe)\n",
        f"Accuracy % (mean ± spread; in brackets the full synthetic set's single score) on "
        f"the first {args.max_test} test rows of each task; "
        f"every synthetic set has {args.budget} rows ({args.rounds} private round(s)); "
        f"100 private texts; delta 1e-5. Written by `python -m experiments.table_tasks`.\n",
        "| method | " + " | ".join(tasks) + " |",
        "|---|" + "---:|" * len(tasks),
    ]
    for key, name in ROWS:
        cells = []
        for t in tasks:
            r = table[t]["rows"].get(key)
            if r is None:
                cells.append("-")
                continue
            full = f" ({100 * r['full_set']:.1f})" if "full_set" in r else ""
            cells.append(f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}{full}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Spreads: "
        + "; ".join(
            sorted({f"{k}: {r['spread_from']}" for t in tasks for k, r in table[t]["rows"].items()})
        )
        + ".",
        "",
        "| task | best private | gain over zero-shot (pts) | spread (pts) | "
        "target 1: >= 3 beyond spread | minus DP centroid (pts) | target 2: reaches it |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for t in tasks:
        g = table[t]["targets"]
        if g:
            lines.append(
                f"| {t} | {g['best_private']} | {g['gain_over_zero_shot_points']:+.1f} | "
                f"{g['spread_points']:.1f} | "
                f"{'met' if g['beats_zero_shot_by_3_beyond_spread'] else 'missed'} | "
                f"{g.get('minus_dp_centroid_points', float('nan')):+.1f} | "
                f"{'met' if g.get('reaches_dp_centroid') else 'missed'} |"
            )
    tuned = [t for t in tasks if "tuning_gain_points" in table[t]["targets"]]
    if tuned:
        lines += [
            "",
            "| task | tuning gain over WASP-proto (pts) | target: >= 3 beyond spread |",
            "|---|---:|---|",
        ]
        for t in tuned:
            g = table[t]["targets"]
            verdict = "met" if g["tuning_adds_3_beyond_spread"] else "missed"
            lines.append(f"| {t} | {g['tuning_gain_points']:+.1f} | {verdict} |")
    lines += ["", "Wall time per cell (s, generation dominates; see the JSON):", ""]
    for t in tasks:
        secs = {k: r.get("seconds") for k, r in table[t]["rows"].items() if r.get("seconds")}
        lines.append(f"- {t}: " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()))
    return "\n".join(lines) + "\n"


def write(args) -> None:
    cdir = args.workroot / "cells"
    cells = [
        json.loads(p.read_text())
        for p in sorted(cdir.glob("*_s*.json"))
        if not p.name.startswith("dp_")
    ]
    dp = {p.stem[3:]: json.loads(p.read_text()) for p in sorted(cdir.glob("dp_*.json"))}
    table = summarise(cells, dp)
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    meta = {
        "setting": {
            "plms": PLMS,
            "embedder": EMBEDDER,
            "epsilon": EPS,
            "delta": DELTA,
            "num_private": NUM_PRIVATE,
            "budget": args.budget,
            "rounds": args.rounds,
            "oversample": args.oversample,
            "max_test": args.max_test,
            "draws": DRAWS,
        },
        "load_avg_1min_at_write": load,
        "tasks": table,
        "cells": cells,
    }
    data_io.atomic_write_json(args.out / "tasks_table.json", meta)
    data_io.atomic_write_text(args.out / "tasks_table.md", render(table, args))


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m experiments.table_tasks", description=__doc__.split("\n")[0]
    )
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument(
        "--methods",
        default=",".join(GENERATIVE),
        help="the generative rows to run (wasp always runs: it also draws the zero-shot set)",
    )
    p.add_argument("--budget", type=int, default=80)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--oversample", type=int, default=2)
    p.add_argument("--tune-steps", type=int, default=20, help="DPO steps per PLM and round")
    p.add_argument("--max-test", type=int, default=500)
    p.add_argument("--out", type=pathlib.Path, default=REPO / "experiments" / "results")
    p.add_argument("--workroot", type=pathlib.Path, default=REPO / "runs" / "tasks")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--check", action="store_true", help="only check every cell's config")
    args = p.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.methods = ["wasp"] + [m for m in args.methods.split(",") if m and m != "wasp"]
    # (in a cell written before, wasp and its zero-shot rows are there already)
    bad = [m for m in args.methods if m not in GENERATIVE]
    if bad:
        p.error(f"unknown method(s) {bad}; choose from {list(GENERATIVE)}")
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        p.error(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.check:
        check_configs(args)
        return 0
    if not args.render_only:
        if not SHARED.is_dir():
            print(f"error: the shared data folder {SHARED} is missing", file=sys.stderr)
            return 2
        cdir = args.workroot / "cells"
        cdir.mkdir(parents=True, exist_ok=True)
        for seed in range(args.seeds):
            for task_name in args.tasks:
                paths = prepare_data(task_name, args.workroot / "data" / task_name, args.max_test)
                scorer = Scorer(task_name, paths, args.workroot / "embed_cache")
                dp_path = cdir / f"dp_{task_name}.json"
                if not dp_path.exists():
                    data_io.atomic_write_json(dp_path, scorer.dp_rows())
                path = cdir / f"{task_name}_s{seed}.json"
                before = json.loads(path.read_text()) if path.exists() else None
                if before and all(m in before["rows"] for m in args.methods[1:]):
                    continue
                t0 = time.perf_counter()
                out = cell(task_name, seed, args, scorer, before)
                out["load_avg_1min_at_end"] = os.getloadavg()[0]
                out["cell_seconds"] = (before or {}).get("cell_seconds", 0.0) + (
                    time.perf_counter() - t0
                )
                data_io.atomic_write_json(path, out)
                write(args)
    write(args)
    print((args.out / "tasks_table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
