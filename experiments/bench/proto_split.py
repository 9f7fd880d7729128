"""How WASP-proto should spend its budget on the prototypes: one release, or one per round?

    python -m experiments.bench.proto_split [--tasks imdb,sst2,yelp_category,yelp_rating]
        [--rounds 1,2,4] [--draws 20] [--out experiments/results/proto_split.json]

The class-prototype release reads only the private data (not the synthetic candidates), so a
release per round measures the same sums again. With the run's (epsilon, delta) split over T
releases (RDP), each release gets sigma_T, and the best a method can do with them is their mean,
of noise std sigma_T / sqrt(T). This script measures, on the table's private sets
(`experiments.table_tasks`), sigma_T, that effective noise, and what it does to the prototypes:
the accuracy of the nearest-prototype classifier on the task's test rows, over ``--draws``
fresh-secret noise draws. Only noised values are used (nothing is compared with clean sums).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np
from wasp_jax.kernels.noise import lattice_step

from experiments import table_tasks
from wasp_jax import data as data_io
from wasp_jax.pipeline.stages import vote_baselines as vb
from wasp_jax.privacy.accounting import calibrate_sigma
from wasp_jax.privacy.noise_source import NoiseSource


def noisy_mean_prototypes(px, py, num_classes: int, rounds: int) -> tuple[np.ndarray, float]:
    """The mean of `rounds` releases of the per-class sums, each at the split budget."""
    sigma = calibrate_sigma(
        table_tasks.EPS, table_tasks.DELTA, num_rounds=rounds, l2_sensitivity=1.0, accountant="rdp"
    )
    step = lattice_step(sigma, vb.GRID)
    shape = (num_classes, px.shape[1])
    total = np.zeros(shape, np.float64)
    for _ in range(rounds):
        units = NoiseSource.fresh().lattice_noise(shape, scale=sigma / step)
        total += np.asarray(vb._noisy_sums(units, px, py, num_classes=num_classes, step=step))
    return total / rounds, float(sigma)


def measure(task_name: str, rounds_list, draws: int, workroot: pathlib.Path) -> dict:
    paths = table_tasks.prepare_data(task_name, workroot / "data" / task_name, 500)
    scorer = table_tasks.Scorer(task_name, paths, workroot / "embed_cache")
    px, py = scorer.private()
    c = scorer.task.num_classes
    out = {}
    for rounds in rounds_list:
        acc = []
        for _ in range(draws):
            protos, sigma = noisy_mean_prototypes(px, py, c, rounds)
            acc.append(scorer.score(vb.centroid_predict(protos, scorer.test_x))["accuracy"])
        out[str(rounds)] = {
            "sigma_per_release": sigma,
            "effective_sigma_of_the_mean": sigma / math.sqrt(rounds),
            "accuracy_mean": float(np.mean(acc)),
            "accuracy_std": float(np.std(acc, ddof=1)),
        }
        print(task_name, rounds, out[str(rounds)], file=sys.stderr, flush=True)
    del px, py
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.proto_split")
    p.add_argument("--tasks", default=",".join(table_tasks.TASKS))
    p.add_argument("--rounds", default="1,2,4")
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--workroot", type=pathlib.Path, default=table_tasks.REPO / "runs" / "tasks")
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=table_tasks.REPO / "experiments" / "results" / "proto_split.json",
    )
    args = p.parse_args(argv)
    rounds_list = [int(r) for r in args.rounds.split(",")]
    res = {
        "epsilon": table_tasks.EPS,
        "delta": table_tasks.DELTA,
        "draws": args.draws,
        "tasks": {
            t: measure(t, rounds_list, args.draws, args.workroot) for t in args.tasks.split(",")
        },
    }
    data_io.atomic_write_json(args.out, res)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
