"""The IMDb replay table of WASP+ beside WASP, the pool baselines and the DP baselines.

    python -m experiments.table_plus [--seeds 3] [--out experiments/results] [--render-only]

Every cell is scored by the same STM, a linear probe (`wasp_jax.stm.train_probe`, C = 1) on
frozen all-MiniLM-L6-v2 embeddings at 128 tokens, tested on the first 1,000 IMDb test reviews;
texts are embedded through ``experiments.imdb_pools``' cache. The probe is deterministic, so a
row's spread is over generation seeds (replay runs) or noise seeds (DP baselines).

Rows (epsilon = 4, delta = 1e-5 wherever private data is used):

* replay ``wasp``: `experiments/configs/replay_imdb.py` at the IMDb table's sizes (N = 600,
  T = 2), through the runner; ``wasp_plus``: `wasp_plus_replay_imdb.py` (same sizes), scored
  with its per-row weights and, as an ablation, without them;
* ``multi-zeroshot`` and ``zerogen[flan-t5-xl]``: the first rows of the pools, equal class
  quotas, no private data (as `experiments.table_imdb.pool_zeroshot`);
* ``dp-sgd-probe`` and ``dp-centroid``: the DP baselines of
  `wasp_jax.pipeline.stages.vote_baselines`
  trained on the 100 bundled private reviews; ``only-private``: the probe on those reviews
  without noise (NOT DP).

Each cell's JSON is written under ``<out>/imdb_table_plus_runs/`` and the table is rebuilt
after each cell (``imdb_table_plus.md`` / ``.csv``); finished cells are skipped on a rerun.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

from experiments import imdb_pools
from experiments.bench.signal import private_embeddings
from experiments.table_imdb import pool_zeroshot
from wasp_jax import config as config_lib
from wasp_jax.pipeline.run import runner
from wasp_jax.pipeline.stages import vote_baselines as vb
from wasp_jax.privacy.noise_source import NoiseSource
from wasp_jax.stm import metrics
from wasp_jax.stm.probe import train_probe

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "configs"
EPS, DELTA = 4.0, 1e-5
ROWS = (
    ("wasp", "replay WASP (N = 600, T = 2)"),
    ("wasp_plus", "replay WASP+ (N = 600, T = 2), with its sample weights"),
    ("wasp_plus-unweighted", "replay WASP+, the same data without the weights"),
    ("multi-zeroshot", "multi-PLM zero-shot (6 pools, 600 rows, no private data)"),
    ("zerogen[flan-t5-xl]", "ZeroGen on the Flan-T5-xl pool (600 rows, no private data)"),
    ("dp-sgd-probe", "DP-SGD linear probe on the 100 private embeddings"),
    ("dp-centroid", "DP nearest-centroid classifier on the 100 private embeddings"),
    ("only-private", "the probe on the 100 private reviews (NOT DP)"),
)


def _score(pred, y) -> dict:
    return {"accuracy": metrics.accuracy(y, pred), "macro_f1": metrics.macro_f1(y, pred, 2)}


def _probe_score(x, y, test, weights=None) -> dict:
    probe, _ = train_probe(x, y, num_classes=2, weights=weights)
    return _score(probe.predict(test[0]), test[1])


def _finetune_score(texts, y, test_rows, weights=None) -> dict:
    """One fine-tuned MiniLM classifier (STM seed 0), the IMDb table's recipe."""
    from experiments.table_imdb import finetune_recipe
    from wasp_jax import stm
    from wasp_jax.stm.evaluate import evaluate_texts

    recipe = finetune_recipe(len(texts))
    res = evaluate_texts(
        texts, list(y), [r["text"] for r in test_rows], [r["label"] for r in test_rows],
        num_classes=2, mode="finetune", seeds=[0], weights=weights, test_max_length=128,
        config=stm.STMConfig(encoder=imdb_pools.EMBEDDER, max_length=128, **recipe),
    )  # fmt: skip
    return {"accuracy": res["accuracy"]["mean"], "macro_f1": res["macro_f1"]["mean"],
            "stm": "finetune", "recipe": recipe}  # fmt: skip


def baseline_adjacency() -> str:
    """The neighbouring relation of the replay runs the DP baselines sit beside (both
    configs state the same one), so that every private row of the table means the same DP."""
    found = {
        config_lib.load_config(str(CONFIGS / f"{name}.py")).privacy.adjacency
        for name in ("replay_imdb", "wasp_plus_replay_imdb")
    }
    if len(found) != 1:
        raise ValueError(f"the replay configs state different adjacencies {sorted(found)}")
    return found.pop()


def run_replay(method: str, seed: int, workroot: pathlib.Path) -> pathlib.Path:
    name = "replay_imdb" if method == "wasp" else "wasp_plus_replay_imdb"
    cfg = config_lib.load_config(str(CONFIGS / f"{name}.py"))
    cfg = config_lib.replace(cfg, **{
        "seed": seed, "eval.test_path": "", "runtime.progress": False,
        "generation.budget": 600, "generation.rounds": 2, "generation.initial": None,
    })  # fmt: skip
    workdir = workroot / f"{method}__g{seed}"
    runner.run(cfg, workdir)
    return workdir


def _read_synthetic(workdir):
    release = workdir / "release"
    rows = [json.loads(x) for x in (release / "synthetic.jsonl").read_text().splitlines()]
    spent = json.loads((release / "privacy.json").read_text())["epsilon_spent"]
    return rows, spent


def cell(row: str, seed: int, ctx) -> dict:
    emb, test, workroot = ctx["emb"], ctx["test"], ctx["workroot"]
    if row in ("wasp", "wasp_plus", "wasp_plus-unweighted"):
        method = "wasp" if row == "wasp" else "wasp_plus"
        rows, spent = _read_synthetic(run_replay(method, seed, workroot))
        if ctx.get("finetune"):
            w = [r["weight"] for r in rows] if row == "wasp_plus" else None
            res = _finetune_score([r["text"] for r in rows], [r["label"] for r in rows],
                                  ctx["test_rows"], w)  # fmt: skip
            return res | {"n_train": len(rows), "epsilon_spent": spent}
        x = imdb_pools.embed_public(emb, [r["text"] for r in rows])
        y = np.asarray([r["label"] for r in rows])
        w = np.asarray([r["weight"] for r in rows]) if row == "wasp_plus" else None
        return _probe_score(x, y, test, w) | {"n_train": len(rows), "epsilon_spent": spent}
    if row in ("multi-zeroshot", "zerogen[flan-t5-xl]"):
        pools = imdb_pools.POOLS if row == "multi-zeroshot" else ("flan-t5-xl",)
        rows = pool_zeroshot(pools, 600)
        x = imdb_pools.embed_public(emb, [r["text"] for r in rows])
        return _probe_score(x, [r["label"] for r in rows], test) | {"n_train": len(rows)}
    px, py = ctx["private"]
    noise = NoiseSource.fresh()  # a new secret per cell: the spread is over noise draws
    dp = dict(num_classes=2, epsilon=EPS, delta=DELTA, adjacency=baseline_adjacency())
    if row == "dp-sgd-probe":
        k, b, info = vb.dp_sgd_probe(noise, px, py, **dp)
        return _score((test[0] @ k + b).argmax(1), test[1]) | {"dp": info}
    if row == "dp-centroid":
        sums, sigma = vb.dp_centroid_classifier(noise, px, py, **dp)
        return _score(vb.centroid_predict(sums, test[0]), test[1]) | {
            "sigma": sigma,
            "adjacency": dp["adjacency"],
        }
    return _probe_score(px, py, test) | {"n_train": len(py), "not_dp": True}


def render(out: pathlib.Path, seeds: int) -> None:
    runs = out / "imdb_table_plus_runs"
    lines = [
        "# IMDb replay: WASP+ beside WASP, the pool baselines and the DP baselines",
        "",
        "STM: linear probe (C = 1) on frozen all-MiniLM-L6-v2 embeddings (128 tokens), 1,000 "
        "IMDb test reviews; epsilon = 4, delta = 1e-5 where private data is used. Mean ± std "
        "(ddof = 1) "
        f"over up to {seeds} seeds (generation seeds for replay runs, noise seeds for the DP "
        "baselines; the other rows are deterministic). Built by `python -m "
        "experiments.table_plus`.",
        "",
        "| row | what | accuracy (%) | macro-F1 (%) | seeds |",
        "| --- | --- | --- | --- | --- |",
    ]
    csv = ["row,accuracy_mean,accuracy_std,macro_f1_mean,macro_f1_std,seeds"]
    for row, what in ROWS:
        # not a glob: row names hold brackets
        paths = sorted(p for p in runs.iterdir() if p.name.rpartition("__g")[0] == row)
        got = [json.loads(p.read_text()) for p in paths]
        if not got:
            continue
        acc = np.array([g["accuracy"] for g in got]) * 100
        f1 = np.array([g["macro_f1"] for g in got]) * 100
        sd = lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0  # as the other tables
        lines.append(
            f"| {row} | {what} | {acc.mean():.2f} ± {sd(acc):.2f} | "
            f"{f1.mean():.2f} ± {sd(f1):.2f} | {len(got)} |"
        )
        csv.append(f"{row},{acc.mean():.4f},{sd(acc):.4f},{f1.mean():.4f},{sd(f1):.4f},"
                   f"{len(got)}")  # fmt: skip
    (out / "imdb_table_plus.md").write_text("\n".join(lines) + "\n")
    (out / "imdb_table_plus.csv").write_text("\n".join(csv) + "\n")


DETERMINISTIC = ("multi-zeroshot", "zerogen[flan-t5-xl]", "only-private")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "experiments" / "results"))
    ap.add_argument("--workroot", default=str(REPO / "runs" / "table_plus"))
    ap.add_argument("--rows", nargs="*", default=[r for r, _ in ROWS])
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument(
        "--finetune", action="store_true",
        help="score replay rows with one fine-tuned MiniLM (STM seed 0) instead of the probe; "
        "cells go to imdb_table_plus_finetune_runs/ (not rendered: a cost measurement)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    runs = "imdb_table_plus_finetune_runs" if args.finetune else "imdb_table_plus_runs"
    (out / runs).mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        emb = imdb_pools.embedder()
        ctx = {
            "emb": emb,
            "test": imdb_pools.embedded_test(1000, emb),
            "private": private_embeddings(emb),
            "workroot": pathlib.Path(args.workroot),
            "finetune": args.finetune,
            "test_rows": imdb_pools.read_rows(imdb_pools.SHARED / "imdb" / "test.jsonl", 1000),
        }
        for seed in range(args.seeds):
            for row in args.rows:
                if row in DETERMINISTIC and seed > 0:
                    continue
                path = out / runs / f"{row}__g{seed}.json"
                if path.exists():
                    continue
                t0 = time.perf_counter()
                res = cell(row, seed, ctx)
                res |= {"row": row, "seed": seed, "seconds": round(time.perf_counter() - t0, 1)}
                path.write_text(json.dumps(res, indent=2, default=float) + "\n")
                print(f"{row} g{seed}: accuracy {res['accuracy']:.4f}", file=sys.stderr,
                      flush=True)  # fmt: skip
                if not args.finetune:
                    render(out, args.seeds)
    if not args.finetune:
        render(out, args.seeds)


if __name__ == "__main__":
    main()
