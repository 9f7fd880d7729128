"""What the run's budget buys when spent on a classifier instead (`eval.dp_classifiers`).

Two DP classifiers of `wasp_jax.pipeline.stages.vote_baselines` are trained on the private
embeddings at the run's own (epsilon, delta) and adjacency, and scored on the evaluation's
test rows (the same `eval.max_test` subset as the STMs), with features from the run's
embedder:

* the DP nearest-centroid classifier: one release of the noisy per-class sums;
* the DP-SGD linear probe: ``PROBE_STEPS`` noisy gradient-sum releases.

Each is a release of its own, spent in addition to the run's budget. For each, in this order:
the run's ledger records it (`RunLedger.record_extra`) and `privacy.json` is rewritten; then
its noisy values are read back from the checkpoint, or drawn from a labelled child of the
run's secret noise source (never from the seed) and saved in the checkpoint with the ledger;
only then are they used. A re-run evaluation (a resume) therefore reuses the same release
and records nothing twice. Only the noisy values (in the private checkpoint) and the test
scores (in `release/eval_baselines.json`) are written; the private embeddings stay in memory.
The exact number of private records is never used or written.
"""

from __future__ import annotations

import logging

import numpy as np

from wasp_jax.pipeline.run import spread
from wasp_jax.pipeline.stages import vote_baselines as vb
from wasp_jax.stm.metrics import accuracy, macro_f1

log = logging.getLogger("wasp_jax")

#: Release names (ledger, noise label, checkpoint arrays) and their rows' names.
CENTROID, PROBE = "dp_centroid", "dp_sgd_probe"
NAMES = {CENTROID: "DP nearest-centroid classifier", PROBE: "DP-SGD linear probe"}
#: The probe's noisy gradient steps and per-record clip (vote_baselines' defaults).
PROBE_STEPS, PROBE_CLIP = 40, 1.0
#: The rows' kind in eval_baselines.json (the report shows them apart).
KIND = "dp_classifier"


def dp_classifier_rows(r, state, committer, test_texts, test_labels) -> dict[str, dict]:
    """{row name: scores} of the two DP classifiers on the given test rows.

    Args:
      r: the run's inputs; state: its state (whose ledger records the releases);
      committer: the run's `Committer` (writes privacy.json, saves the checkpoint).
    """
    plan, num_classes = r.plan, r.task.num_classes
    eps, delta, adj = plan.epsilon, plan.delta, plan.adjacency
    test_labels = np.asarray(test_labels, np.int32)
    x_test = np.asarray(
        r.models.embedder().embed(list(test_texts), progress=r.cfg.runtime.progress), np.float32
    )
    budget = dict(num_classes=num_classes, epsilon=eps, delta=delta, adjacency=adj)

    sigma, sens = vb.centroid_noise(eps, delta, adj)
    info = dict(what="per-class sums of the clipped private embeddings", steps=1)
    released = _release(
        r,
        state,
        committer,
        CENTROID,
        info | _noise(plan, sigma, sens),
        lambda: _centroid(r, budget, sigma),
    )
    pred = vb.centroid_predict(released[f"{CENTROID}_sums"], x_test)
    out = {NAMES[CENTROID]: _row(plan, sigma, 1, test_labels, pred, num_classes)}

    sigma, sens = vb.sgd_probe_noise(eps, delta, adj, steps=PROBE_STEPS, clip=PROBE_CLIP)
    info = dict(
        what="clipped loss-gradient sums of a linear probe, one per step", steps=PROBE_STEPS
    )
    released = _release(
        r,
        state,
        committer,
        PROBE,
        info | _noise(plan, sigma, sens),
        lambda: _probe(r, budget, sigma),
    )
    logits = x_test @ released[f"{PROBE}_kernel"] + released[f"{PROBE}_bias"]
    out[NAMES[PROBE]] = _row(plan, sigma, PROBE_STEPS, test_labels, logits.argmax(1), num_classes)
    return out


def _noise(plan, sigma: float, sens: float) -> dict:
    return dict(
        epsilon=plan.epsilon,
        delta=plan.delta,
        sigma=sigma,
        sensitivity=sens,
        adjacency=plan.adjacency,
    )


def _release(r, state, committer, name: str, info: dict, draw) -> dict[str, np.ndarray]:
    """Records release `name` in the ledger and privacy.json, then returns its noisy arrays:
    read back from the checkpoint, or drawn by `draw` and saved there with the ledger."""
    new = state.ledger.record_extra(name, **info)
    if new:
        committer.write_ledger()  # privacy.json first: it is never behind the checkpoint
    keys = [f"{name}_sums"] if name == CENTROID else [f"{name}_kernel", f"{name}_bias"]
    saved = [r.ckpt.load_array(k) for k in keys]
    if all(a is not None for a in saved):
        arrays = dict(zip(keys, (np.asarray(a) for a in saved)))
        if new:
            committer.commit()
    else:
        log.info(
            "releasing the %s (sigma=%.4g, spent in addition to the run's epsilon)",
            NAMES[name],
            info["sigma"],
        )
        arrays = dict(zip(keys, draw()))
        committer.commit(arrays)
    spread.check_released(NAMES[name], *arrays.values())
    return arrays


def _centroid(r, budget: dict, sigma: float) -> tuple[np.ndarray]:
    priv_emb, priv_label, _ = r.models.private()
    sums, got = vb.dp_centroid_classifier(r.noise.child(CENTROID), priv_emb, priv_label, **budget)
    if got != sigma:
        raise AssertionError(f"the centroid release drew sigma {got}, recorded {sigma}")
    return (np.asarray(sums, np.float32),)


def _probe(r, budget: dict, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    priv_emb, priv_label, _ = r.models.private()
    kernel, bias, info = vb.dp_sgd_probe(
        r.noise.child(PROBE), priv_emb, priv_label, steps=PROBE_STEPS, clip=PROBE_CLIP, **budget
    )
    if info["sigma"] != sigma:
        raise AssertionError(f"the probe's release drew sigma {info['sigma']}, recorded {sigma}")
    return np.asarray(kernel, np.float32), np.asarray(bias, np.float32)


def _row(plan, sigma: float, steps: int, labels, pred, num_classes: int) -> dict:
    """One row of eval_baselines.json: test scores and the release's budget, no private count."""
    dp = bool(plan.private)
    note = (
        "trained on the private data with its own noise at the run's epsilon, spent in "
        "addition to the run's (see privacy.json's epsilon_total); one noise draw, so no spread"
    )
    if not dp:
        note += "; the run's noise is seeded, so this is NOT differentially private"
    return {
        "accuracy": {"mean": accuracy(labels, pred)},
        "macro_f1": {"mean": macro_f1(labels, pred, num_classes)},
        "kind": KIND,
        "dp": dp,
        "epsilon": plan.epsilon,
        "delta": plan.delta,
        "adjacency": plan.adjacency,
        "sigma": sigma,
        "steps": steps,
        "test": int(len(labels)),
        "note": note,
    }
