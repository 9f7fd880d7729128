"""How much of the noise-free vote signal survives the DP noise, per release kind; ONE JSON object.

    python -m experiments.bench.signal [--draws 200] [--per-pool 1000] [--clusters 16]

Data: the six WASP IMDb pools (the first ``--per-pool`` rows of each, half per class; public,
embedded through ``experiments.imdb_pools``' cache), the 100 bundled private reviews
(``wasp_jax/data/imdb/private.jsonl``, embedded in memory only) and the first 1,000 IMDb test
reviews (for the pools' true usefulness). Every release goes through the vote stage
(``wasp_jax.pipeline.stages.vote_plus.aggregate_and_noise``): once with sigma 0 (the noise-free
reference, kept in memory) and ``--draws`` times per epsilon with fresh noise keys.

Two budgets per epsilon (delta = 1e-5, RDP): ``one_release`` gives each kind the whole epsilon
in a single release; ``per_round`` is what one round of each method gets: WASP's per-sample
nearest + farthest histograms at T = 4 (the paper's replay config) and WASP+'s split over
T = 2 rounds (usefulness 0.5, per-cluster nearest + farthest 0.5: the default shares).

Reported per epsilon, budget and kind (mean and 5/50/95 percentiles over draws):

* ``spearman_plm``: Spearman correlation of the noisy and the clean PLM scores (WASP: its robust
  score of the summed per-sample nearest votes; per_plm: the nearest K-vector; usefulness: the
  correct-counts K-vector). ``spearman_test``: of the noisy scores with each pool's accuracy on
  the real test set (a probe fitted on the pool's rows).
* ``good_mass`` / ``bad_mass``: clean nearest (farthest) vote mass on the S picks per class,
  over the clean mass of the clean top-S per class: per_sample picks the top noisy counts,
  per_cluster takes members of the highest-voted clusters (nearest their centre first).
* ``good_cluster_mass`` / ``bad_cluster_mass`` (per_cluster): the clean vote mass of the
  clusters the picks come from, over that of as many clusters with the largest clean totals.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from scipy import stats
from wasp_jax.kernels.weights import plm_scores

from experiments import imdb_pools
from wasp_jax import data as data_io
from wasp_jax.pipeline.stages import plus_select
from wasp_jax.pipeline.stages.vote_plus import aggregate_and_noise, release_sensitivities
from wasp_jax.privacy import calibrate_sigma, l2_sensitivity
from wasp_jax.privacy.composition import calibrate_split
from wasp_jax.privacy.noise_source import NoiseSource

EPSILONS = (1.0, 2.0, 4.0, 8.0)
DELTA = 1e-5
Q = 8
S = 8
BOTH = ("nearest", "farthest")
SPLIT = {"usefulness": 0.5, "per_cluster": 0.5}


def private_embeddings(emb):
    path = data_io.bundled_path("imdb", "private.jsonl")
    rows = data_io.read_labeled_jsonl(path, label_names=imdb_pools.LABELS, what="private data")
    x = emb.embed([r["text"] for r in rows])  # in memory only, never cached
    return np.asarray(x, np.float32), np.asarray([r["label"] for r in rows], np.int32)


def _spearman(a, b) -> float:
    rho = stats.spearmanr(a, b).statistic
    return 0.0 if not np.isfinite(rho) else float(rho)


def _top_mass(clean, labels, picks):
    """Clean mass on the picks over the clean top-S mass, both summed over classes."""
    got = sum(float(clean[p].sum()) for p in picks)
    best = 0.0
    for c in range(len(picks)):
        vals = np.sort(clean[labels == c])[::-1]
        best += float(vals[:S].sum())
    return got / best if best > 0 else 0.0


def _cluster_mass(clean_totals, cluster, picks, kc):
    """Clean cluster-total mass of the clusters the picks come from, over that of as many
    clusters with the largest clean totals, per class, summed over classes."""
    got = best = 0.0
    for c, p in enumerate(picks):
        used = np.unique(cluster[np.asarray(p, np.int64)])
        ids = np.arange(c * kc, (c + 1) * kc)
        got += float(clean_totals[used].sum())
        best += float(np.sort(clean_totals[ids])[::-1][: used.size].sum())
    return got / best if best > 0 else 0.0


def _top_s(hist, labels, num_classes):
    out = []
    for c in range(num_classes):
        rows = np.flatnonzero(labels == c)
        out.append(rows[np.argsort(-hist[rows], kind="stable")[:S]])
    return out


def _summary(values) -> dict:
    v = np.asarray(values, np.float64)
    p5, p50, p95 = np.percentile(v, [5, 50, 95])
    return {"mean": float(v.mean()), "p5": float(p5), "p50": float(p50), "p95": float(p95)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--per-pool", type=int, default=1000)
    ap.add_argument("--clusters", type=int, default=16, help="k-means clusters per class")
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    emb = imdb_pools.embedder()
    pool = imdb_pools.embedded_pool(args.per_pool, emb)
    test_x, test_y = imdb_pools.embedded_test(args.test, emb)
    priv_x, priv_y = private_embeddings(emb)
    K, C, kc = len(pool.names), 2, args.clusters
    mask = np.ones(len(pool.labels), bool)
    kern, bias = plus_select.probe_params(
        pool.emb, pool.labels, pool.plm, mask, num_plms=K, num_classes=C
    )
    test_acc = (np.einsum("md,kdc->kmc", test_x, kern) + bias[:, None]).argmax(-1) == test_y
    test_acc = test_acc.mean(1)
    cluster, centres = plus_select.class_clusters(
        pool.emb, pool.labels, mask, per_class=kc, num_classes=C, seed=args.seed
    )
    common = dict(
        release=BOTH, syn_plm=pool.plm, num_plms=K, syn_cluster=cluster,
        num_clusters=C * kc, probes=(kern, bias),
    )  # fmt: skip
    kinds = ("per_sample", "per_plm", "per_cluster", "usefulness")
    call = lambda key, sig: aggregate_and_noise(
        key, priv_x, priv_y, pool.emb, pool.labels, q=Q, sigmas=sig, **common
    )
    clean = call(NoiseSource.fresh(), dict.fromkeys(kinds, 0.0))
    clean_near, clean_far = (np.asarray(h, np.float64) for h in clean.per_sample)
    wasp_score = lambda near: np.asarray(plm_scores(near, pool.plm, num_plms=K))
    clean_scores = {
        "per_sample": wasp_score(clean.per_sample[0]),
        "per_plm": np.asarray(clean.per_plm[0]),
        "usefulness": np.asarray(clean.usefulness),
    }
    sens = release_sensitivities(kinds, q=Q, release=BOTH, num_plms=K)

    def sigmas(eps, budget):
        if budget == "one_release":
            return {k: calibrate_sigma(eps, DELTA, num_rounds=1, l2_sensitivity=sens[k])
                    for k in kinds}  # fmt: skip
        split = calibrate_split(eps, DELTA, counts=dict.fromkeys(SPLIT, 2), fractions=SPLIT)
        out = {k: split.sigma(k, sens[k]) for k in SPLIT}
        out["per_plm"] = out["per_cluster"] / sens["per_cluster"] * sens["per_plm"]
        out["per_sample"] = calibrate_sigma(
            eps, DELTA, num_rounds=4, l2_sensitivity=l2_sensitivity(Q)
        )
        return out

    picks_of = {
        "per_sample": lambda out: (
            _top_s(np.asarray(out.per_sample[0]), pool.labels, C),
            _top_s(np.asarray(out.per_sample[1]), pool.labels, C),
        ),
        "per_cluster": lambda out: tuple(
            plus_select.cluster_picks(
                np.asarray(out.per_cluster[h]),
                cluster,
                centres,
                pool.emb,
                pool.labels,
                mask,
                s=S,
                num_classes=C,
                per_class=kc,
            )
            for h in (0, 1)
        ),  # fmt: skip
    }
    clean_picks = {k: fn(clean) for k, fn in picks_of.items()}
    result = {
        "benchmark": "signal",
        "data": {
            "pools": list(pool.names),
            "candidates": len(pool.labels),
            "private_records": len(priv_y),
            "test_rows": len(test_y),
            "embedder": imdb_pools.EMBEDDER,
            "max_length": imdb_pools.MAX_LENGTH,
        },
        "q": Q,
        "s": S,
        "clusters_per_class": kc,
        "delta": DELTA,
        "draws": args.draws,
        "sensitivity": sens,
        "clean": {
            "wasp_plm_score": clean_scores["per_sample"].round(4).tolist(),
            "per_plm_share": (clean_scores["per_plm"] / clean_scores["per_plm"].sum())
            .round(4)
            .tolist(),
            "usefulness_accuracy": (clean_scores["usefulness"] / len(priv_y)).round(4).tolist(),
            "test_accuracy": test_acc.round(4).tolist(),
            "spearman_test": {k: _spearman(v, test_acc) for k, v in clean_scores.items()},
            "noise_free_picks_mass": {
                k: {
                    "good": _top_mass(clean_near, pool.labels, g),
                    "bad": _top_mass(clean_far, pool.labels, b),
                }
                for k, (g, b) in clean_picks.items()
            },  # fmt: skip
        },
        "results": {},
    }
    root = NoiseSource.fresh()  # a study of the noise: each draw reads its own label
    for e_i, eps in enumerate(EPSILONS):
        for b_i, budget in enumerate(("one_release", "per_round")):
            sig = sigmas(eps, budget)
            acc = {k: {"spearman_plm": [], "spearman_test": []} for k in clean_scores}
            mass = {k: {"good": [], "bad": []} for k in picks_of}
            cmass = {"good": [], "bad": []}
            for d in range(args.draws):
                out = call(root.child(e_i, b_i, d), sig)
                noisy = {
                    "per_sample": wasp_score(out.per_sample[0]),
                    "per_plm": np.asarray(out.per_plm[0]),
                    "usefulness": np.asarray(out.usefulness),
                }
                for k, v in noisy.items():
                    acc[k]["spearman_plm"].append(_spearman(v, clean_scores[k]))
                    acc[k]["spearman_test"].append(_spearman(v, test_acc))
                for k, fn in picks_of.items():
                    good, bad = fn(out)
                    mass[k]["good"].append(_top_mass(clean_near, pool.labels, good))
                    mass[k]["bad"].append(_top_mass(clean_far, pool.labels, bad))
                    if k == "per_cluster":
                        for h, name in enumerate(("good", "bad")):
                            tot = np.asarray(clean.per_cluster[h], np.float64)
                            cmass[name].append(_cluster_mass(tot, cluster, (good, bad)[h], kc))
            entry = {"sigma": sig}
            for k in kinds:
                row = {}
                if k in acc:
                    row.update({m: _summary(v) for m, v in acc[k].items()})
                if k in mass:
                    row.update({f"{m}_mass": _summary(v) for m, v in mass[k].items()})
                if k == "per_cluster":
                    row.update({f"{m}_cluster_mass": _summary(v) for m, v in cmass.items()})
                entry[k] = row
            result["results"].setdefault(f"eps={eps:g}", {})[budget] = entry
            print(f"eps={eps:g} {budget}: done", file=sys.stderr, flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["note"] = (
        "statistical, not a timing benchmark; 'seconds' is wall time on whatever machine ran it"
    )
    print(json.dumps(result, default=lambda o: None if o is None else float(o)))


if __name__ == "__main__":
    main()
